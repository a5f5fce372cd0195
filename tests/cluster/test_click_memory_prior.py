"""The click prior, pure (cluster/logstore/click_prior.py): position debiasing, relevance
marks, decay, the per-session and per-client limits, and what it ignores."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from cluster.config import Settings
from cluster.logstore.click_prior import (
    ClickEvent,
    Prior,
    PriorFold,
    PriorParams,
    SessionEvidence,
    add_evidence,
    aggregate,
    build_priors,
    click_event,
    decay,
    event_weight,
)

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
DAY = 86400.0
PARAMS = PriorParams(
    half_life_s=DAY, session_cap=4.0, client_sessions=1, propensities=(1.0, 0.5, 0.25, 0.2)
)
_ids = itertools.count(1)


def event(
    doc: str = "d1",
    rank: int | None = 3,
    kind: str = "click",
    session: str = "s1",
    client: str | None = None,
    at: datetime = T0,
    query: str = "q",
) -> ClickEvent:
    return ClickEvent(
        feedback_id=next(_ids), query_key=query, doc_id=doc, kind=kind, at=at,
        session=session, client=client or f"c-{session}", shown_rank=rank,
    )  # fmt: skip


def fold(*events: ClickEvent, params: PriorParams = PARAMS) -> PriorFold:
    folding = PriorFold(params)
    for e in events:
        folding.add(e)
    return folding


def prior_of(events, doc="d1", query="q", params=PARAMS) -> Prior:
    return build_priors(events, params)[query][doc]


def test_a_click_weighs_the_inverse_of_its_rank_propensity():
    assert event_weight("click", 1, PARAMS) == 1.0
    assert event_weight("click", 2, PARAMS) == 2.0
    assert event_weight("click", 3, PARAMS) == 4.0
    assert event_weight("click", 9, PARAMS) == 5.0  # past the list: its last propensity
    # so one deep click says more than one at the top, up to the session cap
    assert prior_of([event(rank=1)]).evidence == 1.0
    assert prior_of([event(rank=2)]).evidence == 2.0
    assert prior_of([event(rank=9)]).evidence == PARAMS.session_cap


def test_marks_weigh_a_whole_session_and_not_relevant_undoes_clicks():
    assert prior_of([event(kind="relevant", rank=1)]).evidence == 4.0
    assert prior_of([event(kind="not_relevant", rank=1)]).evidence == -4.0
    clicked_then_rejected = [event(rank=2), event(rank=2, kind="not_relevant")]
    assert prior_of(clicked_then_rejected).evidence <= 0.0
    with pytest.raises(ValueError, match="kind"):
        event_weight("like", 1, PARAMS)


def test_evidence_halves_every_half_life():
    assert decay(8.0, T0, T0 + timedelta(days=1), DAY) == pytest.approx(4.0)
    assert decay(8.0, T0, T0 + timedelta(days=3), DAY) == pytest.approx(1.0)
    prior = prior_of([event(rank=3)])
    assert prior.at(T0 + timedelta(days=2), DAY).evidence == pytest.approx(1.0)
    assert prior.at(T0 + timedelta(days=2), DAY).sessions == 1
    # sessions of different times add up at the latest one's time
    two = prior_of(
        [event(rank=3, session="a"), event(rank=3, session="b", at=T0 + timedelta(days=1))]
    )
    assert two.as_of == T0 + timedelta(days=1) and two.sessions == 2
    assert two.evidence == pytest.approx(2.0 + 4.0)
    # a session's own earlier clicks have decayed when its next one is added
    state = SessionEvidence("c", 2.0, T0, 1)
    later, kept = add_evidence(state, 1.0, T0 + timedelta(days=1), PARAMS)
    assert later.evidence == pytest.approx(2.0) and later.as_of == T0 + timedelta(days=1)
    assert kept == pytest.approx(1.0)


def test_an_event_older_than_its_session_is_decayed_to_the_session_instead():
    state = SessionEvidence("c", 1.0, T0, 1)
    new, _ = add_evidence(state, 2.0, T0 - timedelta(days=1), PARAMS)
    assert new.as_of == T0 and new.evidence == pytest.approx(2.0)  # 1 + 2 x 0.5


def test_one_session_clicking_a_thousand_times_counts_as_one_capped_session():
    folding = fold(*(event(rank=3) for _ in range(1000)))
    (state,) = folding.sessions.values()
    assert state.evidence == PARAMS.session_cap and state.events == 1000
    assert folding.ignored == {"capped": 999}
    prior = aggregate(folding.sessions.values(), DAY)
    assert prior.sessions == 1 and prior.evidence == PARAMS.session_cap
    # the cap holds on the negative side too
    assert prior_of([event(kind="not_relevant") for _ in range(50)]).evidence == -4.0


def test_a_session_below_its_cap_is_not_called_capped():
    folding = fold(event(rank=1), event(rank=1), event(rank=1))
    assert folding.ignored == {} and folding.sessions[("q", "d1", "s1")].evidence == 3.0


def test_one_client_counts_with_at_most_its_share_of_sessions():
    flood = [event(session=f"s{i}", client="one-address") for i in range(50)]
    folding = fold(*flood)
    assert len(folding.sessions) == 1 and folding.ignored == {"client": 49}
    assert prior_of(flood).sessions == 1
    # with two sessions a client, two count; other clients are not held back
    two = PriorParams(DAY, 4.0, 2, PARAMS.propensities)
    folding = fold(*flood, event(session="x", client="another"), params=two)
    assert len(folding.sessions) == 3 and folding.ignored == {"client": 48}
    # the limit is per (query, document): the same client on another result still counts
    folding = fold(*flood, event(doc="d2", session="s0", client="one-address"))
    assert len(folding.sessions) == 2


def test_a_session_that_already_counts_keeps_counting_from_a_second_address():
    folding = fold(event(session="s", client="a", rank=1), event(session="s", client="b", rank=1))
    assert folding.ignored == {} and folding.sessions[("q", "d1", "s")].events == 2


def test_events_on_results_their_search_did_not_show_count_nothing():
    folding = fold(event(rank=None), event(rank=None, kind="relevant"))
    assert folding.sessions == {} and folding.ignored == {"unshown": 2}
    assert build_priors([event(rank=None)], PARAMS) == {}


def test_priors_are_per_query_and_document_and_count_distinct_sessions():
    events = [
        event(doc="d1", session="a"),
        event(doc="d1", session="b"),
        event(doc="d1", session="b"),  # the same session again: still two sessions
        event(doc="d2", session="a", rank=1),
        event(doc="d1", session="a", query="other"),
    ]
    priors = build_priors(events, PARAMS)
    assert set(priors) == {"q", "other"} and set(priors["q"]) == {"d1", "d2"}
    assert priors["q"]["d1"].sessions == 2 and priors["q"]["d1"].evidence == 8.0
    assert priors["q"]["d2"] == Prior(1.0, 1, T0)


def test_a_logged_row_becomes_an_event_with_the_one_query_key():
    row = {
        "id": 7, "search_id": "5b0c", "doc_id": "42", "kind": "click", "created_at": T0,
        "session_id": None, "client": None, "query": "  What IS  Botulism ",
        "results": [{"doc_id": "9", "rank": 1, "score": 1.0},
                    {"doc_id": "42", "rank": 2, "score": 0.5}],
    }  # fmt: skip
    e = click_event(row, lambda q: " ".join(q.lower().split()))
    assert e.query_key == "what is botulism" and e.shown_rank == 2
    assert e.session == "search:5b0c" and e.client == "session:search:5b0c"
    assert click_event({**row, "doc_id": "43"}, str.strip).shown_rank is None
    named = click_event({**row, "session_id": "u1", "client": "ab12"}, str.strip)
    assert named.session == "u1" and named.client == "ab12"


def test_params_come_from_the_settings_and_refuse_impossible_propensities():
    params = PriorParams.from_settings(Settings())
    assert params.session_cap == 4.0 and params.client_sessions == 1
    assert params.propensities[0] == 1.0 and len(params.propensities) == 10
    with pytest.raises(ValueError, match="propensities"):
        PriorParams(DAY, 4.0, 1, (1.0, 0.0))
