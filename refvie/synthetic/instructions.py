"""Natural-language instructions from templates with real variety: verbs, synonyms, sizes, positions, colours.

Each template names what the pixels show, so an instruction and its ground truth always agree."""

from __future__ import annotations

import numpy as np

ADD = ("Add {obj} {where}", "Insert {obj} {where}", "Put {obj} {where}", "Place {obj} {where}",
       "Introduce {obj} that moves {motion}", "Include {obj} {where}", "Drop {obj} into the scene {where}")
REMOVE = ("Remove the {old}", "Delete the {old}", "Erase the {old} from the video", "Get rid of the {old}",
          "Take out the {old}", "Remove the {old} and keep everything else", "Eliminate the {old}")
REPLACE = ("Swap the {old} for {new}", "Replace the {old} with {new}", "Turn the {old} into {new}",
           "Exchange the {old} for {new}", "Substitute {new} for the {old}")
RECOLOUR = ("Make the {old} {colour}", "Change the colour of the {old} to {colour}", "Recolour the {old} {colour}",
            "Paint the {old} {colour}", "Turn the {old} {colour}")
RETEXTURE = ("Give the {old} a {texture} pattern", "Change the {old} to a {texture} pattern",
             "Cover the {old} with a {texture} pattern")
BACKGROUND = ("Replace the background with {bg}", "Change the background to {bg}", "Swap the backdrop for {bg}",
              "Put the objects in front of {bg}", "Set the scene against {bg}", "Use {bg} as the new background",
              "Change the setting to {bg}")
STYLE = ("Make the video look like {style}", "Apply the style of {style}", "Render the whole clip as {style}",
         "Restyle the footage as {style}", "Give the entire video the look of {style}",
         "Convert every frame into {style}")
MOTION_WORDS = {"linear": ("in a straight line", "steadily across the frame"),
                "sinusoidal": ("in a wavy path", "up and down as it goes"),
                "bounce": ("bouncing off the edges", "around the frame, bouncing")}


def where_phrase(y: float, x: float, height: int, width: int, rng: np.random.Generator) -> str:
    """Words for a position: 'in the top left', 'near the bottom', 'in the centre' …"""
    vertical = "top" if y < height / 3 else "bottom" if y > 2 * height / 3 else ""
    horizontal = "left" if x < width / 3 else "right" if x > 2 * width / 3 else ""
    if vertical and horizontal:
        return str(rng.choice([f"in the {vertical} {horizontal}", f"in the {vertical}-{horizontal} corner"]))
    if vertical or horizontal:
        side = vertical or horizontal
        return str(rng.choice([f"near the {side}", f"on the {side} side", f"at the {side}"]))
    return str(rng.choice(["in the centre", "in the middle of the frame", ""]))


def article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def fill(template: str, rng: np.random.Generator | None = None, **words: str) -> str:
    text = template.format(**words)
    text = " ".join(text.split())  # an empty slot leaves no double space
    return text[0].upper() + text[1:]
