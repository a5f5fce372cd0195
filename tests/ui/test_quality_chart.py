"""The status page's quality plot, from the shapes `GET /versions` and `GET /runs` answer."""

from ui.quality_chart import SERIES, describe, quality_chart, quality_points, run_marks

VERSIONS = [
    {
        "version": "v2", "live": True, "created_at": "2026-12-05T10:00:00+00:00",
        "metrics": {"dev": {"MRR@10": 0.41}, "dl19": {"nDCG@10": 0.49},
                    "traffic": {"MRR@10": 0.52}, "dev_heldout": {"MRR@10": 0.4}},
    },
    {
        "version": "v1", "live": False, "created_at": "2026-12-04T10:00:00+00:00",
        "metrics": {"dev": {"MRR@10": 0.396}, "dl19": {"nDCG@10": "n/a"}},
    },
    {"version": "v0", "live": False, "created_at": None, "metrics": {"dev": {"MRR@10": 0.1}}},
]  # fmt: skip
RUNS = [
    {"started_at": "2026-12-05T09:59:00+00:00", "status": "published", "candidate_version": "v2",
     "reason": "not worse beyond tolerance"},
    {"started_at": "2026-12-05T11:00:00+00:00", "status": "rejected", "candidate_version": "v3",
     "reason": "worse beyond tolerance: dl19 nDCG@10 -0.0200"},
    {"started_at": "2026-12-05T12:00:00+00:00", "status": "running"},
]  # fmt: skip


def test_each_version_gives_a_point_per_series_it_has_a_number_for():
    points = quality_points(VERSIONS)
    got = {(p["version"], p["series"]): p["value"] for p in points}
    assert got == {
        ("v2", "dev MRR@10"): 0.41,
        ("v2", "DL19 nDCG@10"): 0.49,
        ("v2", "traffic-weighted MRR@10"): 0.52,
        ("v1", "dev MRR@10"): 0.396,
    }  # v1's DL19 is not a number, v0 has no time, dev_heldout is not plotted
    assert set(SERIES.values()) == {p["series"] for p in points}


def test_finished_runs_are_marked_with_their_outcome_and_reason():
    marks = run_marks(RUNS)
    assert [m["outcome"] for m in marks] == ["published", "rejected"]
    assert marks[1]["candidate"] == "v3" and "dl19" in marks[1]["why"]


def test_the_chart_layers_versions_and_runs():
    spec = quality_chart(VERSIONS, RUNS).to_dict()
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["line", "rule"]
    assert describe(VERSIONS, RUNS) == {
        "versions": 2,
        "runs": 2,
        "series": ["DL19 nDCG@10", "dev MRR@10", "traffic-weighted MRR@10"],
    }
    without_runs = quality_chart(VERSIONS, []).to_dict()
    assert [layer["mark"]["type"] for layer in without_runs["layer"]] == ["line"]


def test_nothing_to_draw_is_said_not_drawn():
    bare = [{"version": "v", "created_at": "2026-12-05", "metrics": {}}]
    assert quality_chart(bare, RUNS) is None
