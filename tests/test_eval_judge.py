"""The VLM judge client against a fake OpenAI-compatible server on 127.0.0.1."""

import base64
import logging

import numpy as np
import pytest

from kiwi.eval.judge import JudgeClient, JudgeConfig, JudgeError, JudgeRequest, MalformedAnswer, parse_scores
from kiwi.eval.rubrics import OPENVE, REFVIE_BACKGROUND, REFVIE_SUBJECT
from lake import media
from tests.fake_judge import GOOD, FakeJudge


@pytest.fixture
def server():
    fake = FakeJudge()
    yield fake
    fake.close()


def client(server, tmp_path=None, **overrides):
    config = dict(base_url=server.url, model="fake-vl", timeout_s=5, max_retries=2, backoff_s=0.01, frames=2,
                  cache_dir=str(tmp_path / "cache") if tmp_path else None)
    return JudgeClient(JudgeConfig(**{**config, **overrides}))


def request(item_id="item-1", output_hash="h1", rubric=OPENVE, reference=False):
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    return JudgeRequest(item_id, rubric, "Add a red ball", video, video[::-1].copy(), output_hash,
                        reference=np.full((32, 32, 3), (250, 10, 10), np.uint8) if reference else None)


def test_happy_path_sends_the_rubric_as_system_message_then_frames_and_parses_the_scores(server, monkeypatch,
                                                                                         caplog):
    monkeypatch.setenv("KIWI_JUDGE_API_KEY", "sk-secret-123")
    caplog.set_level(logging.DEBUG)
    with client(server) as judge:
        verdict = judge.judge(request())
        assert "sk-secret-123" not in repr(judge)
    assert verdict.scores == {"Instruction Compliance": 4, "Consistency & Detail Fidelity": 4,
                              "Visual Quality & Stability": 3}  # 5 capped at the compliance score
    assert verdict.raw_scores["Consistency & Detail Fidelity"] == 5 and verdict.attempts == 1
    sent = server.requests[0]
    assert sent["path"] == "/v1/chat/completions" and sent["body"]["model"] == "fake-vl"
    assert sent["headers"]["Authorization"] == "Bearer sk-secret-123"
    system, user = sent["body"]["messages"]
    assert system["role"] == "system" and "Instruction Compliance" in system["content"]
    assert "'Add a red ball'" in system["content"]
    images = [c for c in user["content"] if c["type"] == "image_url"]
    assert len(images) == 4 and images[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert "sk-secret-123" not in caplog.text


def test_no_key_in_the_environment_sends_no_auth_header(server, monkeypatch):
    monkeypatch.delenv("KIWI_JUDGE_API_KEY", raising=False)
    with client(server) as judge:
        judge.judge(request())
    assert "Authorization" not in server.requests[0]["headers"]


def test_reference_rubrics_send_the_reference_first_and_the_cap_is_optional(server):
    server.default = ("answer", "Identity Consistency & Compliance: 2\nTemporal Consistency & Texture Fidelity: 5\n"
                                "Physical Integration & Tracking: 4")
    with client(server) as judge:
        verdict = judge.judge(request(rubric=REFVIE_SUBJECT, reference=True))
        with pytest.raises(JudgeError, match="needs the reference image"):
            judge.judge(request(item_id="no-ref", rubric=REFVIE_BACKGROUND))
    with client(server, enforce_cap=False) as judge:
        uncapped = judge.judge(request(item_id="uncapped", rubric=REFVIE_SUBJECT, reference=True))
    assert verdict.scores == {"Identity Consistency & Compliance": 2, "Temporal Consistency & Texture Fidelity": 2,
                              "Physical Integration & Tracking": 2}
    assert uncapped.scores == uncapped.raw_scores == verdict.raw_scores
    images = [c for c in server.requests[0]["body"]["messages"][1]["content"] if c["type"] == "image_url"]
    assert len(images) == 5
    first = media.decode_image(base64.b64decode(images[0]["image_url"]["url"].split(",", 1)[1]))
    assert np.abs(first.astype(int) - (250, 10, 10)).max() < 12  # the (red) reference first, as upstream orders it


def test_a_malformed_answer_is_retried_then_accepted(server):
    server.script = [("answer", "I think it is quite good!"), ("raw", "not json at all")]
    with client(server) as judge:
        verdict = judge.judge(request())
    assert verdict.attempts == 3 and len(server.requests) == 3 and verdict.scores["Instruction Compliance"] == 4


def test_persistently_malformed_answers_fail_that_item_only(server):
    server.default = ("answer", "Instruction Compliance: 7\nConsistency & Detail Fidelity: 3\n"
                                "Visual Quality & Stability: 3")
    with client(server, concurrency=1) as judge:
        with pytest.raises(JudgeError, match="no verdict after 3 attempts.*not an integer from 1 to 5"):
            judge.judge(request())
        server.script = [("answer", GOOD)] * 2
        verdicts = judge.judge_many([request("fine-1"), request("fine-2"), request("bad")])
    assert [v.ok for v in verdicts] == [True, True, False] and "not an integer" in verdicts[2].error
    assert verdicts[2].scores == {}


def test_a_timeout_is_retried(server):
    server.script = [("sleep", 1.0, GOOD)]
    with client(server, timeout_s=0.3) as judge:
        verdict = judge.judge(request())
    assert verdict.attempts == 2 and verdict.ok


def test_every_attempt_timing_out_is_a_clear_error(server):
    server.default = ("sleep", 0.6, GOOD)
    with client(server, timeout_s=0.2, max_retries=1) as judge:
        with pytest.raises(JudgeError, match=r"no verdict after 2 attempts \(no answer within 0.2 s\)"):
            judge.judge(request())


def test_server_errors_are_retried_with_backoff_and_client_errors_are_not(server):
    server.script = [("status", 500), ("status", 503)]
    with client(server) as judge:
        assert judge.judge(request()).attempts == 3
        server.script = [("status", 401)]
        with pytest.raises(JudgeError, match="refused the request: HTTP 401"):
            judge.judge(request(item_id="other"))
    assert len(server.requests) == 4


def test_a_cached_verdict_costs_no_call_and_the_key_covers_output_rubric_and_model(server, tmp_path):
    with client(server, tmp_path) as judge:
        first = judge.judge(request())
        again = judge.judge(request())
        assert again.cached and again.scores == first.scores and len(server.requests) == 1
        judge.judge(request(output_hash="h2"))  # another output of the same item: judged anew
        assert len(server.requests) == 2
    with client(server, tmp_path, model="another-judge") as judge:
        judge.judge(request())
    with client(server, tmp_path) as judge:  # a new process (client) reads the same cache
        assert judge.judge(request()).cached
    assert len(server.requests) == 3


def test_concurrency_is_limited(server):
    server.default = ("sleep", 0.15, GOOD)
    with client(server, concurrency=3) as judge:
        verdicts = judge.judge_many([request(f"item-{i}") for i in range(9)])
    assert all(v.ok for v in verdicts) and [v.item_id for v in verdicts] == [f"item-{i}" for i in range(9)]
    assert 2 <= server.max_in_flight <= 3


@pytest.mark.parametrize("answer, expected", [
    ("**Instruction Compliance**: 4/5\n- Consistency & Detail Fidelity: 3\nvisual quality & stability: 2",
     (4, 3, 2)),
    ("Scores:\nInstruction Compliance: 1\nConsistency & Detail Fidelity: 1\nVisual Quality & Stability: 5", (1, 1, 5)),
])
def test_parsing_accepts_common_formatting(answer, expected):
    assert tuple(parse_scores(answer, OPENVE).values()) == expected


@pytest.mark.parametrize("answer", [
    "Instruction Compliance: 4\nConsistency & Detail Fidelity: 3",  # a dimension missing
    "Instruction Compliance: 3.5\nConsistency & Detail Fidelity: 3\nVisual Quality & Stability: 3",
    "Instruction Compliance: 4\nInstruction Compliance: 2\nConsistency & Detail Fidelity: 3\n"
    "Visual Quality & Stability: 3",
])
def test_parsing_rejects_incomplete_fractional_or_ambiguous_answers(answer):
    with pytest.raises(MalformedAnswer):
        parse_scores(answer, OPENVE)
