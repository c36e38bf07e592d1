"""The edit request inside a long instruction.

Large pools (OpenVE-3M averages ~40 words) first describe the clip — "A man in a blue suit walks down a busy city
street at dusk…" — then ask for one edit, then say what must stay ("…, keeping the street and the background
unchanged"). The description and the keep-clause name places, backgrounds and scenes whatever the edit is, and
they outweigh the request in a sentence embedding: a removal that mentions the park it happens in reads as a
background change. `edit_clause` returns the request alone: from the first imperative edit verb that opens a
clause, up to the first keep-clause. Short instructions, and long ones with no imperative, come back as they are."""

from __future__ import annotations

import re

LONG_WORDS = 16  # below this an instruction is one request already

VERBS = (
    "add", "insert", "place", "put", "give", "include", "let", "make", "have", "show", "draw", "attach",
    "introduce", "spawn", "populate", "remove", "erase", "delete", "get rid of", "take", "eliminate", "clear",
    "wipe", "hide", "strip", "replace", "change", "turn", "swap", "exchange", "substitute", "transform", "convert",
    "switch", "recolou?r", "paint", "dye", "cover", "render", "restyle", "redraw", "stylize", "stylise", "apply",
    "recreate", "reimagine", "shift", "grade", "tint", "wash", "bathe", "move", "transport", "relocate", "set",
    "stage", "surround", "zoom", "pan", "tilt", "dolly", "orbit", "rotate", "shake", "stabili[sz]e", "crop",
    "flip", "overlay", "write", "translate", "play", "slow", "speed", "reverse", "loop", "trim", "cut", "freeze",
    "shorten", "reframe", "edit", "modify", "alter", "transfer", "bring", "drop", "lose", "use", "stylize",
)
_VERB = (r"(?:(?:please|now|then|also|slowly|gently|gradually|quickly|smoothly|carefully|just)\s+)?(?:"
         + "|".join(VERBS) + r")\b")
# a clause opens at the start, after ; : . ! ? or after a comma / "and" / "then"
_OPENING = re.compile(r"(?:^|[;:.!?]\s+|,\s+(?:and\s+|then\s+)?|\s+(?:and\s+)?then\s+)(" + _VERB + ")",
                      re.IGNORECASE)
_KEEP_WORDS = (r"unchanged|untouched|intact|as (?:it|they) (?:is|are|was|were)|the same|as before|kept|"
               r"identical|preserved|exactly as")
# where the request ends: a keep-clause, or a clause that only qualifies how the edit should blend in
_KEEP = re.compile(
    r"(?:,\s*|\s+)(?:while\s+)?(?:keeping|leaving|preserving|maintaining|retaining|without (?:changing|altering|"
    r"touching|affecting)|matching)\b"
    r"|,?\s+(?:and|but)\s+(?:keep|leave|preserve|maintain|do not change|don't change)\b"
    r"|\s+while\s+(?:[^;.]*?\b(?:" + _KEEP_WORDS + r"|stays?|remains?|keeps?)\b)"
    r"|,\s+(?:with\s+)?(?:the rest|everything else|all else|the rest of)\b"
    r"|,\s+[^,;.]*\b(?:" + _KEEP_WORDS + r")\b[^;.]*$",
    re.IGNORECASE)


# a sentence that asks for something rather than describing the clip
_ASKS = re.compile(r"^(?:please\b|kindly\b|i (?:want|would like|'d like|need)\b|(?:can|could|would) you\b|let's\b|"
                   r"there should\b|it should\b|" + _VERB + r")|\b(?:should|must|needs? to|has to|have to|ought to)\b",
                   re.IGNORECASE)
# the polite frame around a request, which says nothing about the edit
_FRAME = re.compile(r"^(?:please\s+|kindly\s+|(?:can|could|would) you\s+(?:please\s+)?|"
                    r"i (?:want|would like|'d like|need)\s+(?:you to\s+)?(?:please\s+)?)", re.IGNORECASE)


def edit_clause(text: str) -> str:
    """The edit request of `text` (see the module's docstring); `text` itself when it is short or has none."""
    text = " ".join(str(text).split())
    if len(text.split()) < LONG_WORDS:
        return text
    request = _request(text)
    if request is None:
        return text
    request = _FRAME.sub("", request).rstrip(" .,?!")
    keep = _KEEP.search(request)  # cut at the first keep-clause
    if keep is not None and keep.start() > 0:
        request = request[: keep.start()]
    return request.strip(" ,.") or text


def _request(text: str) -> str | None:
    """The sentence (or ;-clause) that asks, from its request verb on. A description comes first, so a later
    clause that asks wins over an imperative-looking opening; within the clause, an imperative verb after a
    comma ("In a quiet park…, change the coat…") starts the request."""
    clauses = [c for c in re.split(r"(?<=[.!?;])\s+|;\s*", text) if c.strip()]
    asking = [c for c in clauses[1:] if _ASKS.search(c.strip())]
    if not _ASKS.search(clauses[0].strip()) and asking:
        return _from_verb(asking[0])
    for clause in clauses:
        found = _from_verb(clause)
        if found is not None:
            return found
    return asking[0] if asking else None


def _from_verb(clause: str) -> str | None:
    """`clause` from its first clause-opening edit verb (with a polite frame before it kept for _FRAME), else the
    clause itself when it asks without an imperative ("The toy robot should be removed"), else None."""
    clause = clause.strip()
    if _FRAME.match(clause) or _ASKS.match(clause):
        return clause
    match = _OPENING.search(clause)
    if match is not None:
        return clause[match.start(1):]
    return clause if _ASKS.search(clause) else None
