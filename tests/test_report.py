"""speechclip.report: tables and "finding reproduced?" verdicts from synthetic metric records."""
import json

import pytest

from speechclip import paper_numbers, report

CHANCE = {"speech2image": {"R@1": 0.2, "R@5": 1.0, "R@10": 2.0}, "image2speech": {"R@1": 0.2, "R@5": 1.0, "R@10": 2.0},
          "speech2text": {"R@1": 0.04, "R@5": 0.2, "R@10": 0.4}}
TOPLINE = {f"{d}_R@{k}": 50.0 for d in ("text2image", "image2text") for k in (1, 5, 10)}


def retrieval(r1: float) -> dict:
    return {**{f"{d}_R@{k}": r1 * k ** 0.5 for d in ("speech2image", "image2speech") for k in (1, 5, 10)},
            **{f"{d}_R@{k}": r1 / 4 for d in ("speech2text", "text2speech") for k in (1, 5, 10)},
            "mean_R@10": r1 * 3}


def keywords(avg: float, slots: bool = True) -> dict:
    out = {"kw_avg": avg, "kw_chance": 60.0, "kw_content_avg": avg - 10, "kw_content_chance": 48.0,
           "kw_top1_avg": avg / 3, "kw_top1_chance": 12.0}
    return {**out, **({f"kw_{i}": avg for i in range(1, 9)} if slots else {})}


@pytest.fixture
def records():
    common = {"chance": CHANCE, "clip_topline": TOPLINE}
    return {"10_parallel": {**common, "test": retrieval(10.0), "dev_best": {"mean_R@10": 80.0}},
            "11_cascaded": {**common, "test": {**retrieval(2.0), **keywords(72.0)}, "dev_best": {"mean_R@10": 30.0}},
            "20_cif": {"chance": CHANCE, "test": {**retrieval(1.0), **keywords(70.0, slots=False)}},
            "21_hybrid": None}


def test_lookup_follows_dotted_paths_and_returns_none_when_missing(records):
    assert report.lookup(records["10_parallel"], "chance.speech2image.R@5") == 1.0
    assert report.lookup(records["10_parallel"], "test.nothing") is None
    assert report.lookup(None, "test") is None


@pytest.mark.parametrize("ours, against, noise, at_least, verdict", [
    (10, 2, None, False, "yes"), (2, 10, None, False, "no"), (5, 5, None, False, "no"), (5, 5, None, True, "yes"),
    (None, 2, None, False, "not run"), (10, None, 1.0, False, "not run"), (10, 9.5, 1.0, False, "within noise"),
    (10, 8, 1.0, False, "yes"), (8, 10, 1.0, True, "no"),
    (2.500000037, 2.500000000002, None, False, "no"), (2.49999998, 2.5, None, True, "yes"),  # float32 ties
])
def test_judge(ours, against, noise, at_least, verdict):
    assert report.judge(ours, against, noise, at_least) == verdict


def test_findings_on_records_without_a_hybrid(records):
    judged = report.judge_all(records)
    assert {k: row["reproduced?"] for k, row in judged.items()} == {
        "parallel_over_cascaded": "yes", "cascaded_over_chance": "yes", "zero_shot_over_chance": "yes",
        "keywords_over_chance": "yes", "cif_over_fixed_k": "no", "hybrid_over_parallel": "not run"}
    assert judged["cif_over_fixed_k"]["ours"] == "70.0 vs 72.0" and judged["hybrid_over_parallel"]["ours"] == "—"
    codes = report.verdict_codes(judged)
    assert codes["parallel_over_cascaded"] == 1 and codes["cif_over_fixed_k"] == 0
    assert "hybrid_over_parallel" not in codes  # not run: recorded as nothing
    assert set(report.judge_all(records, table="cif")) == {"cif_over_fixed_k"}


def test_hybrid_finding_reads_its_parallel_branch_and_its_own_parallel_only_numbers(records):
    # a hybrid's evaluate() records both branches: parallel_* and, unprefixed, the retrieval branch (cascaded)
    branch = {f"parallel_{k}": v for k, v in retrieval(11.0).items()}
    records["21_hybrid"] = {"test": {**retrieval(3.0), **branch, **keywords(65.0)},
                            "dev_best": {"mean_R@10": 9.0, "parallel_mean_R@10": 70.0},
                            "parallel_only_test": retrieval(10.0)}
    row = report.judge_all(records, table="hybrid")["hybrid_over_parallel"]
    assert row["reproduced?"] == "yes" and row["ours"] == "11.0 vs 10.0"
    table = report.hybrid_table(records)
    assert table["ours: parallel only"]["speech2image_R@1"] == 10.0
    ours = table[f"ours: {report.MODEL_LABELS['hybrid']}"]
    assert ours["speech2image_R@1"] == 11.0 and ours["dev_mean_R@10"] == 70.0
    assert report.retrieval_table(records)[f"ours: {report.MODEL_LABELS['hybrid']}"]["speech2image_R@1"] == 11.0
    assert report.parallel_branch_key("test.kw_avg") == "test.kw_avg"


def test_spread_reads_the_summary_findings_json_writes(records):
    """speechclip.findings keeps {"summary": {family: {metric: {mean, std, n}}}}, hybrids' parallel branch plain."""
    findings = {"summary": {"parallel": {"speech2image_R@1": {"mean": 10.0, "std": 0.3, "n": 3}},
                            "hybrid": {"speech2image_R@1": {"mean": 10.5, "std": 0.4, "n": 3}}}}
    assert report.seed_spread(findings, "hybrid", "test.parallel_speech2image_R@1") == 0.4
    assert report.seed_spread(findings, "hybrid", "parallel_only_test.speech2image_R@1") == 0.3  # the parallel runs
    branch = {f"parallel_{k}": v for k, v in retrieval(10.5).items()}
    records["21_hybrid"] = {"test": {**retrieval(3.0), **branch}, "parallel_only_test": retrieval(10.0)}
    row = report.judge_all(records, findings, table="hybrid")["hybrid_over_parallel"]
    assert row["reproduced?"] == "within noise" and row["spread"] == "±0.5"


@pytest.mark.parametrize("layout", ["families", "flat"])
def test_a_spread_from_findings_turns_a_small_difference_into_noise(records, layout):
    per_family = {"cascaded_plus": {"test.kw_avg": {"mean": 70.0, "std": 2.0}},
                  "cascaded": {"kw_avg": {"mean": 72.0, "std": 1.0}}}
    findings = {"families": per_family} if layout == "families" else per_family
    assert report.seed_spread(findings, "cascaded", "test.kw_avg") == 1.0
    assert report.seed_spread(findings, "parallel", "test.kw_avg") is None and report.seed_spread(None, "cascaded", "x") is None
    row = report.judge_finding(next(f for f in report.FINDINGS if f.key == "cif_over_fixed_k"), records, findings)
    assert row["reproduced?"] == "within noise" and row["spread"] == "±2.2"  # sqrt(2² + 1²) > 72 - 70
    assert report.verdict_codes({"x": row}) == {"x": 0.5}


def test_retrieval_table_sets_ours_beside_chance_topline_and_the_paper(records):
    table = report.retrieval_table(records)
    parallel = table["ours: Parallel"]
    assert parallel["speech2image_R@1"] == 10.0 and parallel["times_chance"] == pytest.approx(50.0)
    assert parallel["share_of_topline"] == pytest.approx(0.2)
    assert table["ours: chance"]["image2speech_R@10"] == 2.0
    assert table["ours: topline, pocket CLIP text↔image"]["speech2image_R@1"] == 50.0
    assert table["paper: SpeechCLIP Parallel Base, Flickr8k (R)"]["times_chance"] == pytest.approx(267.0)
    assert not any("Hybrid" in row for row in table)  # notebook 21 has not run: no row


def test_keyword_and_cif_tables(records):
    kw = report.keyword_slot_table(records)
    assert kw["ours: Cascaded (K = 8)"]["kw_8"] == 72.0 and kw["ours: Cascaded+ (CIF)"]["kw_1"] is None
    assert kw["ours: Cascaded (K = 8)"]["times_chance"] == pytest.approx(1.2)
    assert kw["paper: Cascaded Base (Flickr8k) (S)"]["kw_avg"] == paper_numbers.KEYWORD_HITS_MEAN["Cascaded Base (Flickr8k)"]
    cif = report.cif_table(records)
    assert cif["ours: Cascaded (K = 8)"]["dev_mean_R@10"] == 30.0 and cif["ours: Cascaded+ (CIF)"]["kw_avg"] == 70.0


def test_paper_keyword_means_agree_with_their_slots():
    for name, slots in paper_numbers.KEYWORD_HITS.items():
        assert sum(slots) / len(slots) == pytest.approx(paper_numbers.KEYWORD_HITS_MEAN[name], abs=0.06)


def test_ours_only_keeps_numbers_keyed_by_family(records):
    ours = report.ours_only(report.retrieval_table(records))
    assert set(ours) == {"parallel", "cascaded", "cascaded_plus", "chance", "topline"}
    assert all(isinstance(v, float) for row in ours.values() for v in row.values())
    json.dumps(ours)


def test_load_records_and_findings_from_a_folder(tmp_path, records):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "10_parallel.json").write_text(json.dumps(records["10_parallel"]))
    loaded = report.load_records(tmp_path)
    assert loaded["10_parallel"] == records["10_parallel"] and loaded["11_cascaded"] is None
    assert report.missing_notebooks(loaded)[0].startswith("11_cascaded")
    assert report.load_findings(tmp_path) is None
    (tmp_path / "findings").mkdir()
    (tmp_path / "findings" / "findings.json").write_text('{"families": {}}')
    assert report.load_findings(tmp_path) == {"families": {}}
