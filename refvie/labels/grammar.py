"""A generative grammar of edit instructions, labelled by construction: the training corpus of the text classifier.

The synthetic world's templates are imperative and always name their scope ("Replace the background with …");
real pools are not. This grammar writes each category in the shapes real instructions take — imperative,
declarative ("the dog becomes …"), passive ("… has been removed"), modal ("there should be …"), "instead of",
negated ("no more …"), questions and requests, long descriptive sentences with a keep-clause — with broad
vocabularies of objects, people, places, looks and camera moves, and with the scope words ("background", "style")
present or absent. Camera, framing, text overlay, speed, playback and motion edits are `other`.

Deterministic: `corpus(n, seed)` is a pure function of its arguments."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lake.taxonomy import EditType

GRAMMAR_VERSION = "2"  # 2: long scene-describing forms, more places, wearables, camera and text edits

# ---- vocabularies -------------------------------------------------------------------------------------------------
OBJECTS = (
    "lamp", "chair", "sofa", "table", "car", "bicycle", "motorbike", "bus", "truck", "boat", "kite", "balloon",
    "umbrella", "cup", "mug", "bottle", "glass of wine", "plate", "bowl of fruit", "vase", "clock", "painting",
    "mirror", "book", "laptop", "phone", "television", "guitar", "piano", "backpack", "suitcase", "bench", "tree",
    "bush", "flower pot", "street lamp", "traffic cone", "trash can", "mailbox", "fence", "sign", "poster", "flag",
    "candle", "teddy bear", "ball", "skateboard", "surfboard", "tent", "statue", "fountain", "bird", "dog", "cat",
    "horse", "cow", "duck", "pigeon", "parrot", "butterfly", "fish", "rabbit", "squirrel", "deer", "puppy", "kitten",
    "drone", "helicopter", "airplane", "hot air balloon", "sailboat", "lantern", "basket", "pumpkin", "cake",
    "pizza", "sandwich", "apple", "banana", "orange", "watermelon", "rose", "sunflower", "cactus", "hat", "crown",
    "camera", "microphone", "speaker", "toy car", "robot", "snowman", "scarecrow", "chandelier", "rug", "pillow",
    "curtain", "window", "door", "shelf", "bookcase", "desk", "stool", "bed", "car tyre", "wheelbarrow", "ladder",
    "bucket", "shovel", "frisbee", "tennis racket", "basketball", "football", "helmet", "wristwatch", "necklace",
)
PEOPLE = (
    "man", "woman", "boy", "girl", "child", "baby", "old man", "old woman", "teenager", "chef", "dancer", "singer",
    "runner", "cyclist", "skateboarder", "surfer", "hiker", "tourist", "student", "teacher", "doctor", "nurse",
    "police officer", "firefighter", "farmer", "musician", "guitarist", "drummer", "soldier", "waiter", "driver",
    "couple", "family", "kids", "crowd", "athlete", "player", "reporter", "presenter", "speaker", "model", "bride",
    "groom", "worker", "girl in the red dress", "man in the suit", "person on the left", "person on the right",
)
WEARABLES = (
    "hat", "cap", "beanie", "sunglasses", "glasses", "scarf", "necklace", "tie", "bow tie", "crown", "tiara",
    "headphones", "earrings", "mask", "backpack", "jacket", "coat", "cape", "helmet", "gloves", "watch", "bracelet",
    "ring", "apron", "wig", "beard", "moustache", "tattoo", "flower crown", "party hat", "chef's hat", "bandana",
)
PLACES = (
    "a beach at sunset", "a snowy mountain", "a dense forest", "a busy city street", "a desert", "a jungle",
    "a space station", "the surface of the moon", "an underwater reef", "a field of sunflowers", "a wheat field",
    "a lavender field", "a rooftop at night", "a neon-lit alley", "a quiet library", "a cozy living room",
    "an office", "a kitchen", "a classroom", "a hospital corridor", "a train station", "an airport terminal",
    "a subway car", "a coffee shop", "a restaurant", "a night club", "a concert stage", "a stadium", "a gym",
    "a swimming pool", "a park", "a playground", "a garden", "a greenhouse", "a farm", "a barn", "a vineyard",
    "a lake shore", "a river bank", "a waterfall", "a canyon", "a volcano", "a glacier", "an ice rink",
    "a medieval castle", "an ancient temple", "a Roman forum", "a futuristic city", "a cyberpunk city",
    "a small village", "a harbour", "a pier", "a lighthouse", "a ship's deck", "a castle courtyard",
    "a cathedral", "a museum hall", "a market square", "a bamboo forest", "a cherry blossom garden",
    "a rainy street", "a foggy moor", "a tropical island", "a savanna", "the Arctic", "a cave", "a bridge",
    "a highway", "a parking garage", "a TV studio", "a news studio", "a lecture hall", "a ballroom",
    "a white studio", "a green screen", "a starry sky", "outer space", "Paris", "Tokyo", "New York",
    "Venice", "London", "the Sahara", "the Alps", "a rice terrace", "a mountain lake", "a sandy dune",
    "a backyard", "a bedroom", "a garage", "a driveway", "a porch", "a balcony", "an attic", "a basement",
    "a hallway", "a hotel lobby", "a shopping mall", "a supermarket aisle", "a food court", "a parking lot",
    "a schoolyard", "a courtyard", "a meadow", "an orchard", "a swamp", "a prairie", "a mountain top", "a cliff",
    "a coastline", "a marina", "a dock", "the deck of a ship", "a spaceship bridge", "a throne room", "a treehouse",
    "a log cabin", "a campsite", "the surface of Mars", "a coral reef", "a ski slope", "a boxing ring",
    "a bowling alley", "a laundromat", "a gas station", "a rooftop garden", "a fairground", "a circus tent",
    "an enchanted forest", "a haunted house", "a palace garden", "a Japanese garden", "a tea house", "a temple",
)
PLACES_BARE = tuple(p.split(" ", 1)[1] if p.startswith(("a ", "an ", "the ")) else p for p in PLACES)
SKIES = ("a stormy sky", "a starry night sky", "a sunset sky", "a clear blue sky", "a sky full of clouds",
         "the northern lights", "a pink sky", "a sky with two moons", "a rainbow sky", "a cloudy grey sky")
STYLES = (
    "a watercolor painting", "an oil painting", "a pencil sketch", "a charcoal drawing", "a crayon drawing",
    "an anime", "a Studio Ghibli film", "a Pixar movie", "a cartoon", "a comic book", "a manga", "pixel art",
    "8-bit graphics", "low-poly 3D art", "a claymation film", "a Lego animation", "a stained glass window",
    "a mosaic", "a Van Gogh painting", "a Monet painting", "a Picasso painting", "ukiyo-e", "a woodblock print",
    "pop art", "a pop art poster", "a vaporwave poster", "a cyberpunk game", "a video game", "a silent film",
    "a 1920s film", "an old VHS tape", "a 16mm film", "a Polaroid", "a daguerreotype", "a blueprint",
    "a neon sign", "a graffiti mural", "a chalk drawing", "an ink wash painting", "a paper cut-out",
    "an origami world", "a tilt-shift miniature", "a thermal camera image", "an X-ray", "a hologram",
    "a renaissance fresco", "an impressionist painting", "a surrealist painting", "a sketchbook doodle",
    "a children's book illustration", "a noir film", "a Wes Anderson film", "a Tim Burton film",
)
STYLE_ADJ = (
    "watercolor", "oil-painted", "anime", "cartoon", "comic", "pixel-art", "low-poly", "claymation", "sketched",
    "hand-drawn", "cel-shaded", "painterly", "impressionist", "cyberpunk", "steampunk", "vaporwave", "retro",
    "vintage", "noir", "psychedelic", "minimalist", "surreal", "neon", "pastel", "glitchy", "grainy",
)
LOOKS = (
    "warm", "cold", "cool blue", "teal and orange", "vintage", "retro", "faded", "washed-out", "desaturated",
    "high-contrast", "moody", "dark and moody", "bright and airy", "dreamy", "hazy", "soft pastel", "golden",
    "sepia", "black and white", "monochrome", "grayscale", "cinematic", "filmic", "gritty", "neon", "vibrant",
    "saturated", "muted", "earthy", "sun-bleached", "icy", "greenish", "purple", "pink", "nostalgic", "gloomy",
    "glossy", "matte", "cross-processed", "bleach-bypass", "infrared", "duotone", "candlelit", "overexposed",
)
GRADES = ("color grade", "colour grade", "grade", "tone", "tint", "look", "aesthetic", "feel", "vibe", "filter",
          "treatment", "palette", "color scheme", "mood", "atmosphere", "finish")
TIMES = ("night", "dusk", "dawn", "sunset", "sunrise", "midday", "winter", "autumn", "summer", "spring",
         "golden hour", "blue hour")
COLOURS = ("red", "blue", "green", "yellow", "orange", "purple", "pink", "black", "white", "grey", "silver",
           "gold", "brown", "turquoise", "navy blue", "bright red", "pale blue", "dark green", "emerald", "crimson",
           "beige", "lavender", "neon green", "hot pink", "matte black")
MATERIALS = ("wood", "wooden", "metal", "metallic", "glass", "gold", "golden", "stone", "marble", "plastic",
             "leather", "velvet", "denim", "ice", "chrome", "brick", "paper", "crystal", "bronze", "rubber")
PATTERNS = ("striped", "polka-dot", "checkered", "plaid", "floral", "camouflage", "leopard-print", "tie-dye")
ATTRIBUTES = ("hair", "shirt", "dress", "jacket", "coat", "shoes", "hat", "eyes", "car", "scarf", "trousers",
              "skirt", "umbrella", "bag", "walls", "door", "roof", "fur", "feathers", "lipstick", "nails", "tie")
EXPRESSIONS = ("smile", "frown", "surprised look", "angry face", "sad face", "laugh", "grin")
POSITIONS = ("", "", "", "on the left", "on the right", "in the corner", "in the background", "in the foreground",
             "next to the {person}", "behind the {person}", "on the table", "on the floor", "in the sky",
             "near the door", "by the window", "at the top of the frame", "in the centre", "on the shelf",
             "beside the {obj2}", "on top of the {obj2}", "under the {obj2}", "in the distance", "on the grass")
KEEP = ("", "", "", "", " while keeping everything else unchanged", ", keeping the rest of the scene the same",
        " and keep the motion intact", ", leave the people untouched", " without changing anything else",
        ", everything else stays the same", " but keep the camera motion", " and keep the lighting consistent",
        ", preserving the original motion")
KEEP_SUBJECT = ("", "", " while keeping the {person} unchanged", ", keeping the {person} exactly as they are",
                " and leave the {person} as is", ", the {person} stays the same", " but keep the subject")
PREFIX = ("", "", "", "", "", "Please ", "Can you ", "Could you ", "I want to ", "I'd like you to ", "Now ",
          "Edit the video to ", "Edit the clip: ", "Try to ", "We need to ", "Let's ")

# ---- templates ----------------------------------------------------------------------------------------------------
# Slots: {obj} {obj2} {new} {person} {wear} {place} {bplace} {sky} {style} {sadj} {look} {grade} {time} {colour}
# {material} {pattern} {attr} {expr} {pos}. Templates starting with "!" are complete sentences (no prefix).
LOCAL_ADD = (
    "add a {obj} {pos}", "add a {obj}", "add {n} {obj}s {pos}", "insert a {obj} {pos}", "put a {obj} {pos}",
    "place a {obj} {pos}", "introduce a {obj} {pos}", "include a {obj} {pos}", "bring in a {obj} {pos}",
    "drop a {obj} {pos}", "draw a {obj} {pos}", "show a {obj} {pos}", "make a {obj} appear {pos}",
    "let a {obj} fly {pos}", "have a {obj} sit {pos}", "have a {person} walk {pos}", "add a {person} {pos}",
    "put a {wear} on the {person}", "give the {person} a {wear}", "give the {person} {wear}s",
    "dress the {person} in a {colour} {wear}", "add a {wear} to the {person}", "attach a {obj} to the {obj2}",
    "!The {person} now wears a {wear}.", "!The {person} is wearing a {colour} {wear}.",
    "!The {person} should be wearing a {wear}.", "!The {person} is holding a {obj}.",
    "!The {person} should hold a {obj}.", "!The {person} has a {wear} on.", "!There is a {obj} {pos}.",
    "!There should be a {obj} {pos}.", "!A {obj} appears {pos}.", "!A {obj} should appear {pos}.",
    "!A {obj} has been added {pos}.", "!A {colour} {obj} is {pos} now.", "!A {obj} sits {pos}.",
    "!A {obj} lands on the {obj2}.", "!The {obj2} gets a {obj} {pos}.", "!Now there is a {obj} {pos}.",
    "!Let's add a {obj} {pos}.", "!A {obj} is placed {pos}.", "!A {person} joins the scene {pos}.",
    "make the {person} hold a {obj}", "let the {person} carry a {obj}", "give the {obj2} a {obj} on top",
    "add a {colour} {obj} that moves across the frame", "spawn a {obj} {pos}", "add a {wear} to the {obj}",
    "add some {obj}s {pos}", "populate the scene with {obj}s", "add a flock of {obj}s {pos}",
    "add a {obj} next to the {person}", "put a {colour} {wear} on the {person}'s head",
    "give the {person} a {colour} {wear} and a {wear2}", "put a {obj} on the {obj2} beside the {new}",
    "!I want a {obj} {pos}.", "!I'd like a {colour} {animal} to appear {pos}.",
)
LOCAL_REMOVE = (
    "remove the {obj}", "remove the {obj} {pos}", "remove the {person}", "remove the {person} {pos}",
    "delete the {obj}", "erase the {obj} {pos}", "erase the {person}", "get rid of the {obj}",
    "take out the {obj}", "take the {obj} out", "take the {person} out of the scene", "take away the {obj}",
    "eliminate the {obj}", "cut the {obj} out of the video", "wipe the {obj} off the {obj2}", "clear the {obj}s",
    "clear the {obj2} of {obj}s", "make the {obj} disappear", "make the {person} vanish", "hide the {obj}",
    "remove the {person}'s {wear}", "take off the {person}'s {wear}", "remove all the {obj}s",
    "remove every {obj} from the scene", "strip the {obj}s from the {obj2}", "lose the {wear}", "drop the {obj}",
    "get the {obj} out of the frame", "delete the watermark", "remove the logo", "erase the text on the {obj}",
    "!The {obj} should be gone.", "!The {obj} is gone.", "!The {obj} has been removed.",
    "!The {person} is removed from the video.", "!The {obj} has disappeared.", "!The {obj} is no longer there.",
    "!The {person} is no longer in the video.", "!No more {obj}s {pos}.", "!No {obj} in the shot.",
    "!There should be no {obj} {pos}.", "!Without the {obj}.", "!Without the {obj} {pos}.",
    "!The {person}'s {wear} is taken off.", "!The {obj} should not be in the scene anymore.",
    "!The {obj} {pos} vanishes.", "!Nobody {pos}.", "!An empty {obj2} without the {obj}.",
    "remove the {obj} so only the {obj2} is visible", "remove the {obj} and fill in what was behind it",
)
LOCAL_CHANGE = (
    "change the {obj} into a {new}", "turn the {obj} into a {new}", "replace the {obj} with a {new}",
    "swap the {obj} for a {new}", "exchange the {obj} for a {new}", "substitute a {new} for the {obj}",
    "transform the {obj} into a {new}", "convert the {obj} into a {new}", "switch the {obj} to a {new}",
    "make the {obj} a {new}", "change the {obj} to {colour}", "make the {obj} {colour}",
    "recolour the {obj} {colour}", "recolor the {obj} {colour}", "paint the {obj} {colour}",
    "change the color of the {obj} to {colour}", "change the colour of the {obj} from {colour} to {colour2}",
    "make the {person}'s {attr} {colour}", "change the {person}'s {attr} to {colour}",
    "turn the {person}'s {attr} {colour}", "dye the {person}'s hair {colour}",
    "make the {obj} look like it is made of {material}", "make the {obj} {material}",
    "turn the {obj} into a {material} one", "give the {obj} a {pattern} pattern",
    "give the {obj} a {colour} finish", "cover the {obj} in a {pattern} pattern",
    "change the {person}'s {expr} into a {expr2}", "make the {person} {age}", "replace the {person} with a {person2}",
    "swap the {person} for a {person2}", "turn the {person} into a {new}", "change the {person}'s face",
    "!The {obj} becomes a {new}.", "!The {obj} turns into a {new}.", "!The {obj} is now a {new}.",
    "!The {obj} should be a {new} instead.", "!The {obj} is replaced by a {new}.",
    "!The {obj} is transformed into a {new}.", "!The {obj} is now {colour}.", "!The {obj} turns {colour}.",
    "!The {obj} is painted {colour}.", "!The {person}'s {attr} is now {colour}.",
    "!The {person}'s {attr} turns {pattern}.", "!The {person}'s {attr} becomes {material}.",
    "!The {person} now has {colour} hair.", "!The {obj} should be {colour} instead of {colour2}.",
    "!A {new} instead of the {obj}.", "!The {obj} {pos} is now a {new}.", "!The {person} becomes a {person2}.",
    "!Instead of the {obj}, a {new}.", "!The {obj} is repainted {colour}.",
    "change the {person}'s {wear} into a {colour} {wear2}", "make the {person}'s {wear} a {colour} {wear2}",
    "replace the {person}'s {wear} with a {wear2}", "swap the {person}'s {wear} for a {colour} {wear2}",
    "turn the {person}'s {colour} {wear} into a {wear2}", "!The {person}'s {wear} should be a {colour} {wear2}.",
    "!The {obj} should become a {new}.", "!The {obj} should be a {colour} {new}.",
    "make the {animal} a {colour} {animal2}", "turn the {animal} into a {animal2}",
    "change the {obj} the {person} is holding into a {new}",
)
BACKGROUND_CHANGE = (
    "replace the background with {place}", "change the background to {place}", "swap the background for {place}",
    "replace the backdrop with {place}", "use {place} as the background", "set the scene in {place}",
    "move the scene to {place}", "move the {person} to {place}", "take the {person} to {place}",
    "transport the {person} to {place}", "relocate the {person} to {place}", "put the {person} in {place}",
    "put the {person} in front of {place}", "place the {person} in {place}", "stage the scene in {place}",
    "stage the {event} in {place}", "set the {event} in {place}", "move the {event} to {place}",
    "have the {person} appear in {place}", "show the {person} in {place}", "place the {subject} in {place}",
    "put the {subject} in {place}", "move the {subject} to {place}", "show the {subject} in {place}",
    "!The {subject} is in {place} now.", "!The {subject} {acts} through {place}.", "set {scope} in {place}",
    "move {scope} to {place}", "!{scope} takes place in {place}.",
    "have the {animal} {act3} in {place}", "show the {person} {act} in {place}",
    "have the {person} {act} in {place}", "make the {person} {act} in {place} instead",
    "change the setting to {place}", "make the setting {place}", "change the location to {place}",
    "change the environment to {place}", "change the surroundings to {place}", "surround the {person} with {place}",
    "replace the sky with {sky}", "change the sky to {sky}", "swap the sky for {sky}", "make the sky {sky}",
    "change the wall behind the {person} to {place}", "replace everything behind the {person} with {place}",
    "change where the {person} is to {place}", "make it look like the {person} is in {place}",
    "!The {person} is now in {place}.", "!The {person} is {act} in {place} now.",
    "!The {person} is {act} in {place} instead of {place2}.", "!The {person} {acts} through {place}.",
    "!The {person} {acts} in {place} instead of {place2}.", "!The scene takes place in {place}.",
    "!The {event} happens in {place}.", "!The video takes place in {place}.", "!The location is {place}.",
    "!The background is {place}.", "!The backdrop becomes {place}.", "!The setting changes to {place}.",
    "!The {person} should be in {place} rather than {place2}.", "!The room behind the {person} becomes {place}.",
    "!Behind the {person}, {place}.", "!The sky is now {sky}.", "!The {person} stands in front of {place}.",
    "!Everything around the {person} becomes {place}.", "!The {person} {acts} through {place} rather than {place2}.",
    "replace the {place_bare} with {place}", "swap the {place_bare} for {place}", "turn the {place_bare} into {place}",
    "change the {place_bare} around the {person} into {place}", "!The setting should be {place}.",
    "!The {person} should be in {place}.", "make it look like the {person} is {act} in {place} instead of {place2}",
    "have the {person} {act} in {place}", "let the {animal} {act3} in {place} instead",
    "move the {person}s onto {place}",
    "!The {subject} should be {act} in {place} instead.", "!I want the {subject} {act} in {place}.",
    "!I'd like the {person} to be {act} on {place}.", "!Show the {animal} {act} across {place} instead of {place2}.",
)
GLOBAL_STYLE = (
    "make the video look like {style}", "make it look like {style}", "make the whole clip look like {style}",
    "turn the video into {style}", "transform the clip into {style}", "convert the footage into {style}",
    "render the video as {style}", "render everything as {style}", "restyle the footage as {style}",
    "apply the style of {style}", "apply a {sadj} style", "stylize the clip as {style}", "make it {sadj}",
    "give the video a {sadj} style", "redraw the video in a {sadj} style", "render it in the style of {style}",
    "give the footage a {look} look", "give it a {look} {grade}", "give the clip a {look} {grade}",
    "give everything a {look} {grade}", "give the video a {look} feel", "apply a {look} {grade}",
    "add a {look} {grade} to the entire clip", "add a {look} filter", "apply a {look} filter",
    "re-grade the footage with {look} tones", "grade the clip {look}", "color grade it {look}",
    "make the colors {look}", "make the colours more {look}", "make the whole video {look}",
    "make it feel {look}", "make the footage {look} and {look2}", "shift the whole palette to {look} tones",
    "turn day into {time}", "change the time of day to {time}", "make it {time}", "change the season to {time}",
    "make the whole scene look like it is {time}", "shoot it like {style}",
    "!The video should look like {style}.", "!The video looks like {style}.", "!The footage is rendered as {style}.",
    "!The whole clip is {sadj}.", "!Everything should look {look}.", "!The colors are {look} and {look2}.",
    "!The video should feel like {style}.", "!The video now has a {look} {grade}.", "!The clip has a {look} look.",
    "!The footage feels {look}, like {style}.", "!The scene is {time} now.", "!It is {time} in the whole video.",
    "!Everything looks like {style}.", "!Every frame looks {sadj}.", "!{look} {grade} over the whole video.",
    "!A {look}, {look2} {grade}.", "!In the style of {style}.", "turn {scope} into {style}", "make {scope} {sadj}",
    "give {scope} a {look} {grade}", "give {scope} a {look} glow", "give {scope} a {sadj} look", "make {scope} {look}",
    "render {scope} as {style}", "convert {scope} to {style}", "convert {scope} to a {sadj} style",
    "make {scope} look like {style}", "!{scope} should look like {style}.", "!{scope} looks {look}.",
    "apply a {look} {grade} to {scope}", "add a {look} glow to {scope}", "tint {scope} {colour}",
    "give {scope} a {colour} tint", "wash {scope} in {colour} light", "bathe {scope} in {look} light",
)
OTHER = (
    "zoom in on the {person}", "zoom in slowly on the {person}'s face", "zoom out", "zoom out to show the {obj}",
    "pan the camera {dir}", "make the camera pan {dir}", "tilt the camera {updown}", "dolly in on the {obj}",
    "dolly out", "move the camera closer to the {person}", "orbit the camera around the {obj}",
    "shake the camera", "stabilize the footage", "remove the camera shake", "switch to a {shot}",
    "cut to a {shot} of the {person}", "change the camera angle to a {shot}", "show it from a {shot}",
    "crop the video to {ratio}", "crop the frame", "flip the video horizontally", "rotate the video",
    "add subtitles", "add {lang} subtitles", "add subtitles that say \"{words}\"", "add a caption reading \"{words}\"",
    "put a caption \"{words}\" at the bottom", "overlay the text \"{words}\"", "add the title \"{words}\"",
    "write \"{words}\" in the corner", "show the text \"{words}\"", "add a title card saying \"{words}\"",
    "add on-screen text", "remove the subtitles", "translate the subtitles into {lang}",
    "play the clip in slow motion", "slow the video down", "speed up the video", "make it {speed} as fast",
    "play the video backwards", "reverse the clip", "loop the video", "make it a time-lapse", "make it a boomerang",
    "trim the first {k} seconds", "cut the last {k} seconds", "freeze the frame when the {person} {acts}",
    "make a multi-shot sequence of the {person}", "cut between the two {person}s",
    "make the {person} {motion}", "have the {person} {motion}", "let the {obj} {motionobj}",
    "make the {obj} {motionobj}", "make the {person} {motion} slowly",
    "!The camera should {cammove}.", "!The camera {cammoves}.", "!The video plays in slow motion.",
    "!The clip is reversed.", "!Subtitles read \"{words}\".", "!A caption says \"{words}\".",
    "!The {person} {motion3}.", "!The {person} should {motion}.", "!The {obj} {motionobj3}.",
    "!Faster playback.", "!{shot_cap} of the {person}.", "!The shot switches to a {shot}.",
    "make the {subject} {motion}", "have the {animal} {motion}", "let the {person} {motion}",
    "!The {animal} {motion3}.", "make the {person} {motion} to the {side}", "make the {person} walk towards the camera",
    "make the {person} {gesture}", "!The {person} {gestures}.", "have the {person} {gesture} at the {obj}",
    "put the {textthing} in the corner as text", "add the {textthing} as text at the top", "add a timestamp",
    "show the {textthing} on screen", "add a text overlay with the {textthing}", "add a watermark with the {textthing}",
    "add a lower third with the {person}'s name", "insert a title card", "add closed captions",
    "make {scope} {speedadj}", "play {scope} {speedplay}", "slow {scope} down", "speed {scope} up",
    "change the shot to a {shot}", "switch the camera to a {shot} of the {person}",
    "zoom out until the {obj} is visible",
    "tilt the camera {updown} from the {person} to the {obj}", "pan from the {obj} to the {person}",
    "add the text \"{words}\" {pos}", "add the subtitle \"{words}\" {pos}", "put the words \"{words}\" {pos}",
    "add the caption \"{words}\" in {colour} letters", "!The video should play at {speedfrac} speed.",
    "!The clip should be played backwards.", "!The camera should slowly zoom out.", "!The shot becomes a {shot}.",
    "make the {person} stop and {gesture}", "make the {person} turn their head and {gesture}",
    "make the {animal} {motion} and then {motion}", "trim the clip to the last {k} seconds",
    "cut the clip so it starts when the {person} {motion3}", "keep only the part where the {person} {motion3}",
    "zoom {scope} in", "reframe {scope} as a {shot}", "cut {scope} into {k} shots", "shorten {scope}",
)
SLOTS_OTHER = dict(
    dir=("left", "right", "left to right", "right to left", "to the {person}", "across the room"),
    updown=("up", "down", "up to the sky", "down to the floor"),
    shot=("close-up", "wide shot", "bird's-eye view", "low-angle shot", "high-angle shot", "over-the-shoulder shot",
          "medium shot", "extreme close-up", "top-down view", "side view", "first-person view", "aerial view",
          "wide aerial view", "drone shot", "tracking shot", "POV shot", "establishing shot", "dutch angle"),
    ratio=("9:16", "a square", "16:9", "a vertical frame", "4:3"),
    lang=("English", "Spanish", "French", "Chinese", "German", "Japanese"),
    words=("Hello", "Welcome", "Day 1", "The End", "Summer 2024", "Breaking News", "Happy Birthday", "Chapter One",
           "Subscribe", "Coming soon"),
    speed=("twice", "three times", "half"),
    speedfrac=("half", "quarter", "double", "triple", "a third of the", "normal"),
    k=("two", "three", "five", "2", "3", "10"),
    motion=("wave", "jump", "dance", "nod", "turn around", "sit down", "stand up", "laugh", "clap", "run",
            "walk to the left", "look at the camera", "raise their hand", "spin", "bow", "blink", "shrug"),
    motion3=("waves", "jumps", "dances", "nods", "turns around", "sits down", "laughs", "runs away",
             "looks at the camera", "raises a hand", "spins", "bows"),
    motionobj=("move faster", "move to the right", "roll away", "spin", "bounce", "fly away", "float up",
               "drive faster", "slow down"),
    motionobj3=("moves faster", "rolls away", "spins", "bounces", "flies away", "floats up", "slows down"),
    cammove=("pan left", "zoom in", "tilt up", "orbit the {obj}", "move forward", "track the {person}",
             "pull back", "push in"),
    cammoves=("pans left", "zooms in", "tilts up", "orbits the {obj}", "moves forward", "tracks the {person}",
              "pulls back", "pushes in"),
    side=("left", "right", "door", "camera", "window"),
    gesture=("clap", "clap its hands", "clap their hands", "wave", "wave goodbye", "point", "give a thumbs up",
             "shake hands", "cross their arms", "nod", "shake their head", "wink", "blow a kiss", "salute"),
    gestures=("claps", "waves", "points at the camera", "gives a thumbs up", "nods", "winks", "salutes"),
    textthing=("date", "time", "name", "title", "logo text", "score", "location", "price", "slogan", "hashtag"),
    speedadj=("faster", "slower", "twice as fast", "half speed", "play backwards", "loop"),
    speedplay=("in reverse", "backwards", "at double speed", "at half speed", "in slow motion", "in fast forward"),
    shot_cap=("Close-up", "Wide shot", "Bird's-eye view", "Low-angle shot"),
)
SCOPES = ("the video", "the clip", "the footage", "it", "everything", "the whole thing", "the scene", "the frames",
          "the entire video", "the shot", "the film", "this video", "the whole clip", "all frames")
ANIMALS = ("dog", "cat", "horse", "bird", "puppy", "kitten", "deer", "bear", "fox", "rabbit", "cow", "duck", "lion",
           "elephant", "penguin", "dolphin", "owl", "goat")
VEHICLES = ("car", "bus", "truck", "bicycle", "motorbike", "boat", "train", "van", "tractor", "jeep")
SUBJECTS = PEOPLE + ANIMALS + VEHICLES
EVENTS = ("interview", "talk", "conversation", "dance", "concert", "meeting", "picnic", "wedding", "game",
          "performance", "lecture", "dinner", "scene", "whole thing", "fight", "race")
ACTS = ("walking", "running", "dancing", "sitting", "standing", "riding", "skating", "cycling", "singing",
        "talking", "playing", "swimming", "driving", "eating")
ACT_BASE = ("walk", "run", "sit", "play", "swim", "sleep", "ride", "dance", "stand")
ACTS3 = ("walks", "runs", "dances", "rides", "skates", "cycles", "gallops", "drives", "wanders", "strolls",
         "swims", "flies")
AGES = ("older", "younger", "look older", "look like a child", "bald", "taller", "smile")

TEMPLATES: dict[EditType, tuple[str, ...]] = {
    EditType.LOCAL_ADD: LOCAL_ADD, EditType.LOCAL_REMOVE: LOCAL_REMOVE, EditType.LOCAL_CHANGE: LOCAL_CHANGE,
    EditType.BACKGROUND_CHANGE: BACKGROUND_CHANGE, EditType.GLOBAL_STYLE: GLOBAL_STYLE, EditType.OTHER: OTHER,
}
KEEP_FOR = {EditType.BACKGROUND_CHANGE: KEEP_SUBJECT, EditType.OTHER: ("",)}


def _slots(rng: np.random.Generator) -> dict[str, Callable[[], str]]:
    def pick(values):
        return lambda: str(values[rng.integers(len(values))])

    slots = dict(
        obj=pick(OBJECTS), obj2=pick(OBJECTS), new=pick(OBJECTS), person=pick(PEOPLE), person2=pick(PEOPLE),
        wear=pick(WEARABLES), place=pick(PLACES + PLACES_BARE[:20]), place2=pick(PLACES), sky=pick(SKIES),
        style=pick(STYLES), sadj=pick(STYLE_ADJ), look=pick(LOOKS), look2=pick(LOOKS), grade=pick(GRADES),
        time=pick(TIMES), colour=pick(COLOURS), colour2=pick(COLOURS), material=pick(MATERIALS),
        pattern=pick(PATTERNS), attr=pick(ATTRIBUTES), expr=pick(EXPRESSIONS), expr2=pick(EXPRESSIONS),
        pos=pick(POSITIONS), n=pick(("two", "three", "a few", "some", "several")), event=pick(EVENTS),
        act=pick(ACTS), acts=pick(ACTS3), age=pick(AGES), act3=pick(ACT_BASE), scope=pick(SCOPES),
        subject=pick(SUBJECTS),
        animal=pick(ANIMALS), animal2=pick(ANIMALS), wear2=pick(WEARABLES), place_bare=pick(PLACES_BARE),
    )
    slots.update({name: pick(values) for name, values in SLOTS_OTHER.items()})
    return slots


class _Lazy(dict):
    """format_map mapping that draws a fresh word for each slot, and expands slots inside drawn words."""

    def __init__(self, slots: dict[str, Callable[[], str]]):
        super().__init__()
        self.slots = slots

    def __missing__(self, key: str) -> str:
        return self.slots[key]().format_map(self)


LONG_SHARE = 0.3  # of the corpus written in the long form


def instruction(edit_type: EditType, rng: np.random.Generator) -> str:
    """One instruction of the given category, in a randomly chosen shape, wording and casing."""
    templates = TEMPLATES[edit_type]
    template = templates[rng.integers(len(templates))]
    slots = _Lazy(_slots(rng))
    complete = template.startswith("!")
    text = template.lstrip("!").format_map(slots)
    long = rng.random() < LONG_SHARE
    if not complete:
        keep = KEEP_FOR.get(edit_type, KEEP)
        text = ("" if long else PREFIX[rng.integers(len(PREFIX))]) + text + keep[rng.integers(len(keep))].format_map(
            slots)
        text = text + ("." if rng.random() < 0.6 else "")
    if long:
        text = long_form(text, complete, rng, slots)
    text = " ".join(text.split()).replace(" .", ".").replace(" ,", ",")
    text = text.replace(" a a", " an a").replace(" a e", " an e").replace(" a o", " an o").replace(" a i", " an i")
    if rng.random() < 0.15:
        return text.lower().rstrip(".")
    return text[0].upper() + text[1:]


# Long forms, as large pools write them: the clip described first, then the request, often with a keep clause.
SCENES = (
    "The video shows a {person} {act} in {place}.", "In {place}, a {person} is {act}",
    "A {person} {acts} through {place} while a {obj} stands nearby.", "The clip follows a {animal} in {place}.",
    "In this clip, a {person} and a {person2} are {act} near a {obj}", "The footage shows {place} on a calm day.",
    "A {colour} {obj} sits {pos} as a {person} is {act} in {place}", "In the video, a {animal} {acts} past a {obj}",
    "On a sunny afternoon in {place}, a {person} is {act} next to a {obj}",
)
REQUEST_FRAMES = ("", "", "Please ", "I want you to ", "Can you ", "Now ")


def long_form(text: str, complete: bool, rng: np.random.Generator, slots: dict) -> str:
    """`text` after a sentence or clause that describes the clip."""
    scene = SCENES[rng.integers(len(SCENES))].format_map(slots)
    if complete:
        return f"{scene.rstrip('.')}. {text}"
    frame = REQUEST_FRAMES[rng.integers(len(REQUEST_FRAMES))]
    joiner = ". " if scene.endswith(".") or rng.random() < 0.5 else "; "
    request = frame + text if frame else text
    return scene.rstrip(".") + joiner + (request[0].upper() + request[1:] if joiner == ". " else request)


def corpus(n_per_category: int, seed: int = 0) -> list[tuple[str, EditType]]:
    """`n_per_category` distinct-as-drawn instructions per category, interleaved, deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_per_category):
        for edit_type in TEMPLATES:
            rows.append((instruction(edit_type, rng), edit_type))
    return rows
