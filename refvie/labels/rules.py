"""The rule classifier: ordered regular expressions, the fast first pass.

A style or background edit mentions its scope; removal, addition and change are told apart by their verbs. Exact on
the synthetic world's templates, weak on real phrasing (declaratives, scene moves without the word "background"):
the text classifier (`refvie.labels.text_model`) takes its answer as one feature among many."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lake.taxonomy import EditType
from refvie.labels.base import Label

_STYLE = re.compile(
    r"\b(look(s)? like|style|styled|restyle|render(ed)? (the )?(whole|entire|every|all)|the look of|"
    r"convert (every|each|all|the whole|the entire)|palette|colour scheme|color scheme|tones\b|posteri[sz]e|"
    r"poster\b|print\b|screen print|sketch|drawing|painting|painterly|watercolou?r|oil paint|cartoon|anime|"
    r"pixel art|comic|ukiyo|van gogh|black and white|grayscale|greyscale|sepia|vintage|film grain|"
    r"line drawing|canvas)", re.I)
_WHOLE_SCENE_CHANGE = re.compile(r"\b(season|time of day|(at|into|to) night\b|nighttime|daytime)", re.I)
_WHOLE_FRAME = re.compile(r"\b(video|clip|footage|frames?|scene|image|whole|entire|everything)\b", re.I)
_BACKGROUND = re.compile(
    r"\b(background|backdrop|back ground|setting|surroundings|environment|scene against|"
    r"(set|move|place|put|relocate|transport)s? (the scene|the setting|everything|them|it|the video)\b)", re.I)
# where something stands — behind, in front of, against, in the sky: a background change, unless the request adds
# something there ("add a radio on the workbench behind him")
_POSITION = re.compile(r"\b(in front of|against (a|an|the)|sky\b|behind (the|them|it|him|her))", re.I)
_ADDS_SOMETHING = re.compile(r"^\s*(please\s+)?(add|insert|put|place|introduce|include|drop|attach|spawn|draw|"
                             r"make|let|have)\s+(a|an|some|two|three|four|several|a few|another|one)\b", re.I)
# nouns that name a place, not a thing in it: replacing one, or moving someone into one, changes the background
_PLACE_NOUNS = (r"(?:street|road|lane|alley|avenue|highway|beach|shore|coast(?:line)?|forest|woods|jungle|park|"
                r"garden|backyard|yard|schoolyard|playground|courtyard|square|plaza|field|meadow|prairie|desert|"
                r"savanna|mountain(?: top)?|hill|valley|canyon|cliff|lake|river|sea|ocean|bay|harbou?r|marina|"
                r"island|city|town|village|countryside|farm|barn|room|living room|bedroom|kitchen|office|"
                r"apartment|house|studio|hall|gym|stage|arena|stadium|station|airport|terminal|library|museum|"
                r"church|cathedral|temple|castle|palace|cafe|café|restaurant|bar|club|mall|market|shop|store|"
                r"classroom|school|hospital|corridor|hallway|basement|attic|garage|driveway|porch|terrace|"
                r"balcony|rooftop|dock|pier|deck|cave|glacier|space|planet|moon|mars|swamp|marsh|orchard|"
                r"vineyard|campsite|snowfield|slope|parking lot|food court)")
_PLACE_SWAP = re.compile(r"\b(replace|swap|change|turn|transform|exchange)\s+(the|this|that)\s+(\w+\s+){0,2}?"
                         + _PLACE_NOUNS + r"\b(?!'s)\s*(with|for|into|to)\b", re.I)
# someone (not something: "place the vase in the kitchen" adds a vase) taken into a place
_PLACE_MOVE = re.compile(r"\b((put|place|set|take|bring)\s+(him|her|them|us)|(move|transport|relocate|send)\s+"
                         r"(him|her|them|us|it|the \w+(?: \w+)?))\s+(in|into|onto|on|to|inside)\s+"
                         r"(the middle of\s+)?(a|an|the)\s+(\w+[ -]){0,4}?" + _PLACE_NOUNS + r"\b", re.I)
# camera, playback and on-screen text: what the picture shows stays, how it is shot, timed or captioned changes
_CAMERA_PLAYBACK_TEXT = re.compile(
    r"\b(slow[- ]motion|slow (it|the \w+) down|speed (it |the \w+ |the whole \w+ )?up|time-?lapse|fast[- ]forward|"
    r"reverse (the |this )?(video|clip|footage|playback|it|whole \w+)|reversed|in reverse|backwards|"
    r"zoom(s|ed|ing)? (in|out)|pan(s|ned)? (the camera|slowly|left|right)|"
    r"tilt(s|ed)? (the camera|up|down)|(the|a) camera (should |slowly )?(move|pan|tilt|zoom|orbit|track|rotate)|"
    r"tracking shot|aerial view|close-up|wide shot|subtitles?|captions?|on-screen text|title card|freeze the frame|"
    r"trim (the|it)|(play|played|plays) (it |the \w+ )?(at|in|backwards)|loop the)\b", re.I)
_REMOVE_BACKGROUND = re.compile(r"^\s*(please\s+)?(remove|delete|erase)\s+(the\s+)?(background|backdrop)", re.I)
_LEADING_REMOVE = re.compile(r"^\s*(please\s+)?(remove|delete|erase|get rid of|take out|take away|eliminate)\b",
                             re.I)
_WEAR = re.compile(r"\b(wear|wearing|hold|holding|carry|carrying)\b|\bgive (the |a |an )?\w+( \w+)? (a|an|some) "
                   r"(?!\w*\s*(pattern|texture|colou?r|look|style|finish))", re.I)
_REMOVE = re.compile(r"\b(remove|delete|erase|get rid of|take out|take away|eliminate|cut out|wipe out)\b", re.I)
_ADD = re.compile(r"^\s*(please\s+)?(add|insert|put|place|introduce|include|drop|bring|attach|spawn)\b|"
                  r"\b(add|insert|introduce)\b", re.I)
_CHANGE = re.compile(r"\b(swap|replace|turn|change|make|recolou?r|paint|give|exchange|substitute|cover|"
                     r"transform|convert|dress|colou?r)\b", re.I)


@dataclass(frozen=True)
class RuleClassifier:
    """Ordered regular-expression rules; no weights, deterministic, ~10 µs an instruction."""

    name: str = "rules"

    def predict(self, instructions: list[str]) -> list[Label]:
        return [Label(t, None, self.name) for t in self.classify(instructions)]

    def classify(self, instructions: list[str]) -> list[EditType]:
        return [self.classify_one(text) for text in instructions]

    @staticmethod
    def classify_one(text: str) -> EditType:
        if _REMOVE_BACKGROUND.search(text):
            return EditType.BACKGROUND_CHANGE
        if _LEADING_REMOVE.search(text):  # "Remove the person in the background" removes a person
            return EditType.LOCAL_REMOVE
        if _CAMERA_PLAYBACK_TEXT.search(text):
            return EditType.OTHER
        if _STYLE.search(text) and (_WHOLE_FRAME.search(text) or not _REMOVE.search(text)):
            return EditType.GLOBAL_STYLE
        if _BACKGROUND.search(text) or _PLACE_SWAP.search(text) or _PLACE_MOVE.search(text):
            return EditType.BACKGROUND_CHANGE
        if _ADDS_SOMETHING.search(text):
            return EditType.LOCAL_ADD
        if _POSITION.search(text):
            return EditType.BACKGROUND_CHANGE
        if _WHOLE_SCENE_CHANGE.search(text):  # seasons, time of day: the whole picture changes its look
            return EditType.GLOBAL_STYLE
        if _REMOVE.search(text):
            return EditType.LOCAL_REMOVE
        if _ADD.search(text) or _WEAR.search(text):
            return EditType.LOCAL_ADD
        if _CHANGE.search(text):
            return EditType.LOCAL_CHANGE
        return EditType.OTHER
