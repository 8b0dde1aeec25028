"""The rating app: its SQLite store, its JSON API, import from the database, preference
pairs, the report's human section, and a real headless Chromium driving the page."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tunelab.errors import DataError, RunDirError
from tunelab.evaluation.human import export_sheet, import_ratings, resolve_sheet
from tunelab.evaluation.human_store import (
    RatingStore,
    check_answer,
    key_fingerprint,
    shown_swapped,
)

SCRIPT_OUTPUT = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"> & <b>'


def fake_run(folder: Path, tag: str, n: int = 10, outputs=None, prompts=None) -> Path:
    """A run directory holding only what sheets and reports read: run.json, predictions."""
    (folder / "predictions").mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"status": "finished", "method": "lora"}))
    rows = [
        {
            "row": i,
            "prompt": (prompts or {}).get(i, f"question {i}"),
            "reference": f"the answer to question {i} is {i}",
            "prediction": (outputs or {}).get(i, f"{tag} says the answer is {i}"),
        }
        for i in range(1, n + 1)
    ]
    (folder / "predictions" / "validation.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows)
    )
    return folder


@pytest.fixture
def scale_sheet(tmp_path):
    news = (
        "Summarise in one sentence:\nThe city council voted on Tuesday to extend the night bus "
        "network to three new districts. The first routes start in March; the rest follow "
        "by the summer, paid for by the regional transport fund."
    )
    outputs = {
        1: SCRIPT_OUTPUT,
        2: "The council will extend night buses to three more districts from March.",
    }
    run = fake_run(tmp_path / "model", "model", n=4, outputs=outputs, prompts={2: news})
    export_sheet([run], tmp_path / "sheets" / "s", n=4, seed=3)
    return tmp_path / "sheets" / "s"


@pytest.fixture
def pair_sheet(tmp_path):
    a = fake_run(tmp_path / "alpha", "alpha")
    b = fake_run(tmp_path / "beta", "beta")
    export_sheet([a, b], tmp_path / "pairs" / "p", n=6, seed=5)
    return tmp_path / "pairs" / "p"


def client_for(sheet, raters=("alice", "bob")):
    from fastapi.testclient import TestClient

    from tunelab.workflows.human_app import create_rating_app, open_rating_session

    session = open_rating_session(sheet, list(raters) if raters else None)
    return TestClient(create_rating_app(session)), session


# ---- the store ---------------------------------------------------------------------------


def test_store_upserts_one_answer_per_rater_and_item(tmp_path):
    key = tmp_path / "k.key.json"
    key.write_text("{}")
    store = RatingStore(tmp_path / "r.sqlite", key_fingerprint(key))
    tokens = store.add_raters(["alice", "bob"])
    assert list(tokens) == ["alice", "bob"] and len(set(tokens.values())) == 2
    assert all(len(t) >= 32 for t in tokens.values())
    assert store.add_raters(["bob", "carol"])["bob"] == tokens["bob"]  # known raters keep theirs
    store.save("alice", 1, {"fluency": 3}, "", False)
    store.save("alice", 1, {"fluency": 5, "coherence": 2}, "better", False)  # a revision
    store.save("bob", 1, {"fluency": 1}, "", False)
    got = [(a["rater"], a["item"], a["values"], a["comment"]) for a in store.answers()]
    assert got == [
        ("alice", 1, {"fluency": 5, "coherence": 2}, "better"),
        ("bob", 1, {"fluency": 1}, ""),
    ]
    assert [a["rater"] for a in store.answers("bob")] == ["bob"]
    # every save is committed: another connection sees it at once
    with sqlite3.connect(tmp_path / "r.sqlite") as con:
        assert con.execute("SELECT COUNT(*) FROM answers").fetchone() == (2,)
    with pytest.raises(DataError, match="another version of the sheet"):
        RatingStore(tmp_path / "r.sqlite", "0" * 64)
    with pytest.raises(DataError, match="rater name 'no spaces'"):
        store.add_raters(["no spaces"])
    with pytest.raises(DataError, match="no rating database"):
        RatingStore(tmp_path / "missing.sqlite", "x", create=False)


@pytest.mark.parametrize(
    ("mode", "body", "message"),
    [
        ("scale", {"ratings": {"fluency": 6}}, "fluency=6 is not an integer from 1 to 5"),
        ("scale", {"ratings": {"fluency": 0}}, "fluency=0 is not"),
        ("scale", {"ratings": {"fluency": 2.5}}, "fluency=2.5 is not"),
        ("scale", {"ratings": {"fluency": True}}, "fluency=True is not"),
        ("scale", {"ratings": {"fluency": "3"}}, "fluency='3' is not"),
        ("scale", {"ratings": {"humour": 3}}, "unknown criterion 'humour'"),
        ("scale", {"ratings": {}}, "at least one rating"),
        ("scale", {"preference": "A"}, "unknown field"),
        ("scale", [1, 2], "must be a JSON object"),
        ("scale", {"ratings": {"fluency": 3}, "comment": 7}, "comment must be a string"),
        ("scale", {"ratings": {"fluency": 3}, "comment": "x" * 5001}, "longer than 5000"),
        ("pairwise", {"preference": "C"}, "preference must be one of A, B, tie"),
        ("pairwise", {"preference": "a"}, "preference must be one of"),
        ("pairwise", {"ratings": {"fluency": 3}}, "unknown field"),
    ],
)
def test_check_answer_rejects_bad_answers(mode, body, message):
    with pytest.raises(DataError, match=message):
        check_answer(mode, ["fluency", "coherence"], body)


def test_check_answer_keeps_the_sheet_order_and_trims_the_comment():
    got = check_answer(
        "scale", ["fluency", "coherence"], {"ratings": {"coherence": 2, "fluency": 5}}
    )
    assert list(got[0].items()) == [("fluency", 5), ("coherence", 2)] and got[1] == ""
    assert check_answer("pairwise", [], {"preference": "tie", "comment": " ok "}) == (
        {"preference": "tie"},
        "ok",
    )


def test_the_per_rater_order_is_seeded_and_differs_between_raters():
    alice = [shown_swapped(0, "alice", i) for i in range(1, 41)]
    assert alice == [shown_swapped(0, "alice", i) for i in range(1, 41)]  # reproducible
    assert alice != [shown_swapped(0, "bob", i) for i in range(1, 41)]
    assert alice != [shown_swapped(1, "alice", i) for i in range(1, 41)]
    assert 10 < sum(alice) < 30
    # the same in a fresh process (string seeds do not depend on PYTHONHASHSEED)
    code = "from tunelab.evaluation.human_store import shown_swapped as s;"
    code += "print([s(0, 'alice', i) for i in range(1, 41)])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(alice)


def test_sheets_are_found_by_output_path_file_or_folder(scale_sheet):
    want = resolve_sheet(scale_sheet)
    assert want["key"] == scale_sheet.with_name("s.key.json")
    assert want["db"] == scale_sheet.with_name("s.ratings.sqlite")
    for other in (scale_sheet.parent, want["key"], want["csv"], want["jsonl"]):
        assert resolve_sheet(other) == want
    (scale_sheet.parent / "t.key.json").write_text("{}")
    with pytest.raises(DataError, match="holds 2 rating sheets; name one"):
        resolve_sheet(scale_sheet.parent)
    with pytest.raises(DataError, match="not found"):
        resolve_sheet(scale_sheet.parent / "nothing")


# ---- the API -----------------------------------------------------------------------------


def test_api_stores_answers_and_rejects_bad_input_with_4xx(scale_sheet):
    client, session = client_for(scale_sheet)
    alice, bob = session.tokens["alice"], session.tokens["bob"]
    page = client.get(f"/r/{alice}")
    assert page.status_code == 200 and "rate.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    sheet = client.get(f"/api/{alice}/sheet").json()
    assert sheet["rater"] == "alice" and sheet["mode"] == "scale"
    assert sheet["criteria"] == ["fluency", "coherence", "relevance"]
    assert [it["item"] for it in sheet["items"]] == [1, 2, 3, 4] and sheet["answers"] == {}
    assert sheet["items"][0]["output"] == SCRIPT_OUTPUT  # sent as data; the page escapes it
    bad = [
        (f"/api/{alice}/answers/1", b'{"ratings": {"fluency": 9}}', 400, "not an integer"),
        (f"/api/{alice}/answers/1", b'{"ratings": {"wit": 3}}', 400, "unknown criterion"),
        (f"/api/{alice}/answers/1", b"{not json", 400, "not JSON"),
        (f"/api/{alice}/answers/1", b"\xff\xfe", 400, "not JSON"),
        (f"/api/{alice}/answers/1", b"", 400, "not JSON"),
        (f"/api/{alice}/answers/1", b"null", 400, "JSON object"),
        (f"/api/{alice}/answers/99", b'{"ratings": {"fluency": 3}}', 404, "item '99'"),
        (f"/api/{alice}/answers/x", b'{"ratings": {"fluency": 3}}', 404, "item 'x'"),
        (f"/api/{alice}x/answers/1", b'{"ratings": {"fluency": 3}}', 403, "unknown rater"),
        ("/api/answers/1", b'{"ratings": {"fluency": 3}}', 404, "Not Found"),
        (f"/api/{alice}/answers/1", b'{"comment": "' + b"x" * 70000 + b'"}', 413, "larger"),
    ]
    for url, body, code, message in bad:
        r = client.put(url, content=body)
        assert r.status_code == code, (url, body[:40], r.text)
        assert message in r.json()["error"]
    assert client.get(f"/r/{alice[:-1]}").status_code == 403
    assert client.get("/api//sheet").status_code == 404
    assert client.post(f"/api/{alice}/answers/1", content=b"{}").status_code == 405
    assert client.get("/").json()["error"].startswith("open your private rating link")
    assert session.store.answers() == []  # nothing stored by any of them
    ok = client.put(f"/api/{alice}/answers/2", json={"ratings": {"fluency": 4}, "comment": "hm"})
    assert ok.json() == {"saved": 2, "answered": 1, "total": 4}
    client.put(f"/api/{alice}/answers/2", json={"ratings": {"fluency": 2, "relevance": 5}})
    client.put(f"/api/{bob}/answers/3", json={"ratings": {"coherence": 1}})
    # each token sees only its own answers
    mine = client.get(f"/api/{alice}/sheet").json()["answers"]
    assert mine == {"2": {"values": {"fluency": 2, "relevance": 5}, "comment": ""}}
    assert client.get(f"/api/{bob}/sheet").json()["answers"] == {
        "3": {"values": {"coherence": 1}, "comment": ""}
    }
    rep = import_ratings(scale_sheet.parent)
    assert rep["raters"] == ["alice", "bob"]
    assert rep["criteria"]["fluency"]["mean"] == 2.0
    assert rep["criteria"]["coherence"]["mean"] == 1.0


def test_pairwise_order_differs_per_rater_and_import_maps_it_back(pair_sheet, tmp_path):
    client, session = client_for(pair_sheet, ("alice", "bob", "carol"))
    key = json.loads(pair_sheet.with_name("p.key.json").read_text())
    seen = {}
    for rater, token in session.tokens.items():
        items = client.get(f"/api/{token}/sheet").json()["items"]
        seen[rater] = [it["output_a"].split()[0] for it in items]
        # each rater always prefers beta's output, wherever it is shown; carol ties item 1
        for it in items:
            choice = "A" if it["output_a"].startswith("beta") else "B"
            if rater == "carol" and it["item"] == 1:
                choice = "tie"
            r = client.put(f"/api/{token}/answers/{it['item']}", json={"preference": choice})
            assert r.status_code == 200
    assert len({tuple(v) for v in seen.values()}) > 1  # the raters saw different orders
    rows = session.store.answers()
    assert any(a["swapped"] for a in rows) and not all(a["swapped"] for a in rows)
    rep = import_ratings(pair_sheet)
    pref = rep["criteria"]["preference"]
    beta, alpha = key["runs"][1], key["runs"][0]
    assert pref["n"] == 18 and pref["win_rate"][beta] == pytest.approx(17 / 18)
    assert pref["win_rate"][alpha] == 0 and pref["win_rate"]["tie"] == pytest.approx(1 / 18)
    lo, hi = pref["win_rate_ci"][beta]
    assert lo < 17 / 18 < hi <= 1
    # preference pairs: beta's output chosen on every item with a majority
    from tunelab.cli import main

    out = tmp_path / "pairs.jsonl"
    assert main(["human", "import", str(pair_sheet), "--preferences", str(out), "--json"]) == 0
    pairs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(pairs) == 6
    assert all(p["chosen"].startswith("beta") and p["rejected"].startswith("alpha") for p in pairs)
    assert pairs[0]["prompt"].startswith("question") and set(pairs[0]) == {
        "prompt",
        "chosen",
        "rejected",
    }
    assert main(["human", "import", str(pair_sheet), "--preferences", str(out)]) == 2  # exists
    # item 1 has 2 of 3 judgements for beta: dropped at --min-agreement 0.9
    args = ["--preferences", str(out), "--min-agreement", "0.9", "--overwrite", "--json"]
    assert main(["human", "import", str(pair_sheet), *args]) == 0
    assert len(out.read_text().splitlines()) == 5


def test_preferences_drop_ties_and_split_votes(pair_sheet, tmp_path):
    from tunelab.evaluation.human import preference_pairs

    _, session = client_for(pair_sheet, ("alice", "bob"))
    flip = {"A": "B", "B": "A", "tie": "tie"}

    def answer(rater, item, sheet_choice):  # what the rater clicks for a choice in sheet order
        shown = flip[sheet_choice] if session.swapped(rater, item) else sheet_choice
        session.store.save(rater, item, {"preference": shown}, "", session.swapped(rater, item))

    answer("alice", 1, "A")
    answer("bob", 1, "A")  # agreed: A wins
    answer("alice", 2, "tie")
    answer("bob", 2, "tie")  # a tie: dropped
    answer("alice", 3, "A")
    answer("bob", 3, "B")  # split: dropped
    answer("alice", 4, "B")  # one judgement: kept
    pairs, counts = preference_pairs(pair_sheet)
    texts = {json.loads(x)["item"]: json.loads(x) for x in pair_sheet.with_suffix(".jsonl").open()}
    assert pairs == [
        {
            "prompt": texts[1]["prompt"],
            "chosen": texts[1]["output_a"],
            "rejected": texts[1]["output_b"],
        },
        {
            "prompt": texts[4]["prompt"],
            "chosen": texts[4]["output_b"],
            "rejected": texts[4]["output_a"],
        },
    ]
    assert counts == {"items": 6, "ties": 1, "no_majority": 1, "unjudged": 2, "pairs": 2}
    with pytest.raises(DataError, match="share from 0 to 1"):
        preference_pairs(pair_sheet, min_agreement=1.5)


def test_import_reads_database_and_filled_sheets_together(scale_sheet, tmp_path, capsys):
    import csv

    from tunelab.cli import main

    _, session = client_for(scale_sheet, ("alice",))
    for item, v in ((1, 4), (2, 5), (3, 3), (4, 4)):
        session.store.save("alice", item, {"fluency": v}, "", False)
    with open(scale_sheet.with_suffix(".csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    filled = tmp_path / "carl.csv"
    with open(filled, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(dict(r, fluency=v) for r, v in zip(rows, (4, 5, 2, 4)))
    capsys.readouterr()
    assert main(["human", "import", str(scale_sheet), str(filled), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    from sklearn.metrics import cohen_kappa_score

    fl = rep["criteria"]["fluency"]
    assert rep["raters"] == ["alice", "carl"] and fl["n"] == 8 and fl["mean"] == 31 / 8
    want = cohen_kappa_score([4, 5, 3, 4], [4, 5, 2, 4], weights="quadratic")
    assert fl["cohen_kappa"] == pytest.approx(want)
    # a rater in both the database and a sheet is refused, not merged
    shutil.copy(filled, tmp_path / "alice.csv")
    with pytest.raises(DataError, match="rater 'alice' has answers in"):
        import_ratings(scale_sheet, [tmp_path / "alice.csv"])
    # the old form still works, and an empty sheet folder says what is missing
    assert import_ratings(scale_sheet.with_name("s.key.json"), [filled])["raters"] == [
        "alice",
        "carl",
    ]
    run = fake_run(tmp_path / "other", "other")
    export_sheet([run], tmp_path / "empty" / "e", n=2)
    with pytest.raises(DataError, match="no answers for .*no rating database"):
        import_ratings(tmp_path / "empty")
    with pytest.raises(DataError, match="rating-scale sheet"):
        from tunelab.evaluation.human import preference_pairs

        preference_pairs(scale_sheet)


def test_export_criteria_are_configurable_and_checked(tmp_path):
    from tunelab.cli import main

    run = fake_run(tmp_path / "run", "model")
    args = ["human", "export", str(run), "--output", str(tmp_path / "c"), "--n", "2"]
    assert main([*args, "--criteria", "accuracy, tone"]) == 0
    assert json.loads((tmp_path / "c.key.json").read_text())["criteria"] == ["accuracy", "tone"]
    assert "accuracy,tone,comment" in (tmp_path / "c.csv").read_text().splitlines()[0]
    with pytest.raises(DataError, match="criterion 'comment'"):
        export_sheet([run], tmp_path / "d", criteria=("fluency", "comment"))
    with pytest.raises(DataError, match="distinct"):
        export_sheet([run], tmp_path / "d", criteria=("tone", "tone"))
    # a rating database of the same name counts as taken
    (tmp_path / "c.csv").unlink()
    (tmp_path / "c.jsonl").unlink()
    (tmp_path / "c.key.json").unlink()
    (tmp_path / "c.ratings.sqlite").write_bytes(b"")
    with pytest.raises(RunDirError, match="c.ratings.sqlite exist"):
        export_sheet([run], tmp_path / "c")


def test_report_puts_human_scores_next_to_metrics(tmp_path):
    from scipy import stats

    from tunelab.cli import main
    from tunelab.evaluation.human_metrics import human_vs_metrics, sentence_scores

    # outputs from exact to unrelated, so ROUGE/BLEU/chrF rank them; the raters agree
    outs = {
        1: "the answer to question 1 is 1",
        2: "the answer to question 2 is two",
        3: "answer 3 maybe",
        4: "bananas are yellow",
        5: "the answer is 5",
    }
    run = fake_run(tmp_path / "model", "model", n=5, outputs=outs)
    export_sheet([run], tmp_path / "s" / "x", n=5, seed=0)
    _, session = client_for(tmp_path / "s", ("ann", "ben"))
    ann = {1: 5, 2: 4, 3: 2, 4: 1, 5: 3}
    ben = {1: 5, 2: 5, 3: 2, 4: 1, 5: 3}
    for rater, marks in (("ann", ann), ("ben", ben)):
        for item, v in marks.items():
            session.store.save(rater, item, {"relevance": v}, "", False)
    res = human_vs_metrics(tmp_path / "s")
    refs = {i: f"the answer to question {i} is {i}" for i in outs}
    key = json.loads((tmp_path / "s" / "x.key.json").read_text())
    order = [it["row"] for it in key["items"]]
    chrf = [sentence_scores(outs[r], refs[r])["chrf"] for r in order]
    human = [(ann[it["item"]] + ben[it["item"]]) / 2 for it in key["items"]]
    want = stats.spearmanr(chrf, human).statistic
    got = {(c["human"], c["metric"]): c for c in res["correlations"]}
    assert got[("relevance", "chrf")]["rho"] == pytest.approx(want)
    assert got[("relevance", "chrf")]["n"] == 5 and want > 0.8
    assert got[("overall", "chrf")]["rho"] == pytest.approx(want)
    assert got[("fluency", "bleu")]["rho"] is None  # nobody rated fluency
    assert res["metric_means"][str(run)]["chrf"] == pytest.approx(sum(chrf) / 5)
    out = tmp_path / "report.html"
    assert main(["report", str(run), "--output", str(out), "--human", str(tmp_path / "s")]) == 0
    text = out.read_text()
    assert "<h2>Human ratings · x.key.json</h2>" in text
    assert "Rank correlation with the human scores (Spearman)" in text
    assert "<th>human relevance (mean, 95% CI)</th>" in text and f"{want:.4f}" in text
    assert "5 of 5 items rated by 2 rater(s): ann, ben" in text
    assert "ranks these outputs most like the raters: <b>" in text


def test_pairwise_report_correlates_preference_with_metric_difference(tmp_path):
    from tunelab.evaluation.human_metrics import human_vs_metrics

    good = fake_run(
        tmp_path / "good",
        "good",
        n=4,
        outputs={i: f"the answer to question {i} is {i}" for i in range(1, 5)},
    )
    bad = fake_run(tmp_path / "bad", "bad", n=4, outputs={i: f"no idea {i}" for i in range(1, 5)})
    export_sheet([good, bad], tmp_path / "p" / "p", n=4)
    _, session = client_for(tmp_path / "p", ("ann",))
    key = json.loads((tmp_path / "p" / "p.key.json").read_text())
    for it in key["items"]:
        sheet_choice = "A" if it["a"] == str(good) else "B"
        sw = session.swapped("ann", it["item"])
        shown = {"A": "B", "B": "A"}[sheet_choice] if sw else sheet_choice
        session.store.save("ann", it["item"], {"preference": shown}, "", sw)
    res = human_vs_metrics(tmp_path / "p")
    assert res["human"]["criteria"]["preference"]["win_rate"][str(good)] == 1.0
    assert res["metric_means"][str(good)]["rougeL"] == pytest.approx(100.0)
    # the raters always prefer the same run: a constant human score has no rank correlation
    assert all(c["rho"] is None for c in res["correlations"])


# ---- a real browser ----------------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``tunelab human serve`` in a subprocess on a loopback port."""

    def __init__(self, sheet: Path, port: int, raters: str | None = None):
        cmd = [sys.executable, "-c", "import sys; from tunelab.cli import main; sys.exit(main())"]
        cmd += ["human", "serve", str(sheet), "--port", str(port)]
        cmd += ["--raters", raters] if raters else []
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(
            target=lambda: [*map(lines.put, self.proc.stdout), lines.put(None)], daemon=True
        )
        self.reader.start()
        self.links: dict[str, str] = {}
        deadline = time.monotonic() + 30
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None or line.startswith("each link is private"):
                break
            if line.startswith("  ") and "http://127.0.0.1:" in line:
                name, url = line.split()
                self.links[name] = url
        assert self.links, f"the server printed no links (exit {self.proc.poll()})"
        host, port = "127.0.0.1", int(next(iter(self.links.values())).split(":")[2].split("/")[0])
        while time.monotonic() < deadline:  # uvicorn accepts once its loop runs
            try:
                socket.create_connection((host, port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.reader.join(10)
        self.proc.stdout.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.reader.join(10)
        self.proc.stdout.close()


def test_serve_on_a_free_port_prints_private_links(scale_sheet):
    import urllib.error
    import urllib.request

    from tunelab.cli import main

    server = Server(scale_sheet, 0, raters="2")
    try:
        assert list(server.links) == ["rater1", "rater2"]
        url = server.links["rater1"]
        port = int(url.split(":")[2].split("/")[0])
        assert url.startswith("http://127.0.0.1:") and port > 0
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200 and b"rate.js" in r.read()
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url[:-3] + "abc", timeout=10)
        assert e.value.code == 403 and b"unknown rater token" in e.value.read()
    finally:
        server.stop()
    assert main(["human", "serve", str(scale_sheet), "--raters", "a b"]) == 2
    assert main(["human", "serve", str(scale_sheet), "--raters", "x,x"]) == 2


@pytest.fixture
def browser(tmp_path):
    missing = [n for n, p in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not p]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium")
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install {', '.join(missing)} (.ci/run does)")
        pytest.skip(f"needs {', '.join(missing)} (Debian: chromium chromium-driver; pip selenium)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1200,900",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _shots_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("TUNELAB_SCREENSHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_rating_in_a_real_browser(browser, scale_sheet, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    wait = WebDriverWait(d, 10)
    text = lambda id_: d.find_element(By.ID, id_).text  # noqa: E731

    def open_page(url):
        d.get(url)
        wait.until(lambda _: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))

    def keys(*ks):
        d.find_element(By.TAG_NAME, "body").send_keys(*ks)

    def button(criterion, value):
        return d.find_element(
            By.CSS_SELECTOR, f".scale[data-criterion='{criterion}'] button[data-value='{value}']"
        )

    def selected():  # criterion -> the selected value, read in one go
        return d.execute_script(
            "const out = {};"
            "for (const b of document.querySelectorAll('.scale button.selected'))"
            "  out[b.parentNode.dataset.criterion] = Number(b.textContent);"
            "return out;"
        )

    def saved(n):
        wait.until(lambda _: text("progress") == f"{n} of 4 answered")

    def db():
        key = key_fingerprint(scale_sheet.with_name("s.key.json"))
        return RatingStore(scale_sheet.with_name("s.ratings.sqlite"), key, create=False)

    port = _free_port()
    server = Server(scale_sheet, port, raters="alice,bob")
    try:
        open_page(server.links["alice"])
        assert text("position") == "Item 1 of 4" and text("progress") == "0 of 4 answered"
        assert d.find_element(By.ID, "output").is_displayed()
        assert not d.find_element(By.ID, "pair").is_displayed()
        assert not d.find_element(By.ID, "choices").is_displayed()
        # the model output holding markup is shown as text, and none of it ran
        out = d.find_element(By.ID, "output")
        assert out.text == SCRIPT_OUTPUT and not out.find_elements(By.CSS_SELECTOR, "*")
        assert d.execute_script("return window.__xss") is None
        with pytest.raises(NoAlertPresentException):
            d.switch_to.alert.text  # noqa: B018
        # item 1 by keyboard: 4, 5, 3 for the three criteria, a comment, Enter
        keys("4", "5", "3")
        saved(1)
        wait.until(lambda _: selected() == {"fluency": 4, "coherence": 5, "relevance": 3})
        d.find_element(By.ID, "comment").send_keys("fine, a bit long", Keys.ENTER)
        wait.until(lambda _: text("position") == "Item 2 of 4")
        # item 2 by mouse
        button("fluency", 5).click()
        saved(2)
        button("coherence", 4).click()
        button("relevance", 5).click()
        wait.until(lambda _: selected() == {"fluency": 5, "coherence": 4, "relevance": 5})
        shot = _shots_dir(tmp_path) / "rate-single.png"
        d.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        d.find_element(By.ID, "next").click()
        wait.until(lambda _: text("position") == "Item 3 of 4")
        # item 3: both
        keys("5")
        saved(3)
        button("coherence", 4).click()
        keys("2")  # the highlight moved on to relevance
        wait.until(lambda _: selected() == {"fluency": 5, "coherence": 4, "relevance": 2})
        keys(Keys.ENTER)
        wait.until(lambda _: text("position") == "Item 4 of 4")
        expected = {
            1: ({"fluency": 4, "coherence": 5, "relevance": 3}, "fine, a bit long"),
            2: ({"fluency": 5, "coherence": 4, "relevance": 5}, ""),
            3: ({"fluency": 5, "coherence": 4, "relevance": 2}, ""),
        }
        wait.until(
            lambda _: {a["item"]: (a["values"], a["comment"]) for a in db().answers()} == expected
        )
        # reload: the rater continues at the first unanswered item, and can go back to revise
        open_page(server.links["alice"])
        assert text("position") == "Item 4 of 4" and text("progress") == "3 of 4 answered"
        keys(Keys.ARROW_LEFT)
        wait.until(lambda _: text("position") == "Item 3 of 4")
        assert selected() == expected[3][0]
        keys("1")  # fluency 5 -> 1
        wait.until(lambda _: db().answers("alice")[2]["values"]["fluency"] == 1)
        expected[3][0]["fluency"] = 1
        # kill -9 and restart on the same port: the links still work, every answer is there
        server.kill9()
        # a request cut off by the kill is logged as a network error; nothing else may be
        cut = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
        assert all(e.get("source") == "network" for e in cut), cut
        server = Server(scale_sheet, port)
        open_page(server.links["alice"])
        assert text("progress") == "3 of 4 answered" and text("position") == "Item 4 of 4"
        for item in (3, 2, 1):
            keys(Keys.ARROW_LEFT)
            wait.until(lambda _, i=item: text("position") == f"Item {i} of 4")
            assert selected() == expected[item][0]
        assert d.find_element(By.ID, "comment").get_attribute("value") == "fine, a bit long"
        assert {a["item"]: (a["values"], a["comment"]) for a in db().answers()} == expected
        # the second rater's link sees none of it
        open_page(server.links["bob"])
        assert text("rater") == "Rater: bob" and text("progress") == "0 of 4 answered"
        assert text("position") == "Item 1 of 4" and selected() == {}
        assert d.find_element(By.ID, "comment").get_attribute("value") == ""
        # no script errors, no blocked resources (the page keeps to its own CSP)
        assert [e for e in d.get_log("browser") if e["level"] == "SEVERE"] == []
        # a wrong token gets no page
        d.get(server.links["bob"][:-2] + "xx")
        assert "unknown rater token" in d.find_element(By.TAG_NAME, "body").text
    finally:
        server.stop()


def test_ab_rating_in_a_real_browser(browser, pair_sheet, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    wait = WebDriverWait(d, 10)
    server = Server(pair_sheet, _free_port(), raters="alice")
    try:
        d.get(server.links["alice"])
        wait.until(lambda _: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        a = d.find_element(By.ID, "output-a").text
        b = d.find_element(By.ID, "output-b").text
        assert {a.split()[0], b.split()[0]} == {"alpha", "beta"}
        assert not d.find_element(By.ID, "single").is_displayed()
        assert not d.find_elements(By.CSS_SELECTOR, ".scale")
        body = d.find_element(By.TAG_NAME, "body")
        body.send_keys("b" if b.startswith("beta") else "a")  # prefer beta, wherever it is
        wait.until(lambda _: d.find_element(By.ID, "progress").text == "1 of 6 answered")
        shot = _shots_dir(tmp_path) / "rate-ab.png"
        d.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        chosen = d.find_element(By.CSS_SELECTOR, "#choices button.selected").text
        assert chosen == ("B is better" if b.startswith("beta") else "A is better")
        body.send_keys("\n")
        wait.until(lambda _: d.find_element(By.ID, "position").text == "Item 2 of 6")
        body.send_keys("t")
        wait.until(lambda _: d.find_element(By.ID, "progress").text == "2 of 6 answered")
        d.find_element(By.CSS_SELECTOR, "#choices button[data-choice='tie']")
        rep = import_ratings(pair_sheet)["criteria"]["preference"]
        key = json.loads(pair_sheet.with_name("p.key.json").read_text())
        assert rep["n"] == 2 and rep["win_rate"][key["runs"][1]] == 0.5
        assert rep["win_rate"]["tie"] == 0.5
    finally:
        server.stop()
