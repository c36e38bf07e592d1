"""What ships — README, docs, notebooks, code comments and docstrings — says how things are, not how the project got
there: no development sessions, no issue numbers, no "the old code". A phrase found here fails with its place."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["README.md", "docs/*.md", "notebooks/*.ipynb", "queries/*.sql", "lake/**/*.py", "refvie/**/*.py",
           "kiwi/**/*.py", "scripts/*.py", "bench/*.py", "Makefile", "pyproject.toml"]
HISTORY = {
    r"\bsessions? \d+": "a numbered development session",
    r"\b(last|previous|next|this|earlier) session\b": "a development session",
    r"\bissues? #?\d+\b": "an issue number",
    r"\bthe issue('s)? (asks|asked|named|says|said|wants)\b": "what an issue asked for",
    r"\blab notes?\b": "lab notes",
    r"\bthe old (code|model|writer)\b": "what the code was before",
    r"\bdid not train it\b": "a run's story",
    r"\b(an|the) earlier run\b": "an earlier run's figures",
    r"\bafter the \w+ change\b": "a change's story",
}


def shipped_files() -> list[Path]:
    return sorted({p for pattern in SHIPPED for p in ROOT.glob(pattern) if p.is_file()})


def test_no_development_history_in_what_ships():
    found = []
    for path in shipped_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            for pattern, what in HISTORY.items():
                if re.search(pattern, line, re.IGNORECASE):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {what}: {line.strip()[:100]}")
    assert not found, "development history in shipped text:\n" + "\n".join(found)


def test_the_history_check_finds_what_it_looks_for():
    samples = ["as measured in session 16", "the last session's probe", "see issue #12", "the issue asks for 3 dB",
               "the old code measured 2.61 ms", "1.01 in an earlier run", "after the compaction change"]
    assert all(any(re.search(p, s, re.IGNORECASE) for p in HISTORY) for s in samples)
    assert not any(re.search(p, "a LanceDB session caps its caches", re.IGNORECASE) for p in HISTORY)
