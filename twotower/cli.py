"""The `twotower` command, the product's one entry point. Each command is a thin wrapper whose
imports happen inside it, so `twotower status` does not pay for torch or Ray."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

FIRST_PARTY = ("cluster", "training", "deployments", "learning", "twotower", "monitoring", "ui")
DEBUG = {"on": False}  # set by the --debug option, read when a command fails


def _reason(err: BaseException) -> str:
    """The first line of the innermost cause: '[Errno 111] Connection refused', not a repr."""
    while getattr(err, "reason", None) is not None and err.reason is not err:  # urllib3
        err = err.reason
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[text.index("[Errno") :] if "[Errno" in text else text


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while err is not None and err not in seen:
        seen.append(err)
        err = err.__cause__ or err.__context__
    return seen


def _service(cause: BaseException) -> tuple[str, str] | None:
    """(which service at which address, the setting that names it) if ``cause`` is a failure
    to reach one of the stack's services."""
    from cluster.config import get_settings

    package = type(cause).__module__.split(".")[0]
    if package in ("urllib3", "minio"):
        return f"the artifact store (S3 at {get_settings().s3_address})", "TWOTOWER_S3_ENDPOINT"
    if package in ("psycopg", "psycopg_pool"):
        return "the log store (PostgreSQL)", "TWOTOWER_POSTGRES_DSN"
    if isinstance(cause, ConnectionError) and "Ray" in str(cause):
        return f"Ray (at {get_settings().ray_connect_address})", "TWOTOWER_RAY_ADDRESS"
    return None


def explain(err: BaseException) -> tuple[str, str] | None:
    """(what happened, what to do) for an expected failure; None for a bug (a traceback)."""
    for cause in _chain(err):
        service = _service(cause)
        if service is not None:
            name, setting = service
            return (
                f"{name} is unreachable: {_reason(cause)}",
                f"start the stack with `twotower up`, or set {setting}",
            )
        if type(cause).__name__ == "ValidationError" and "pydantic" in type(cause).__module__:
            return f"the settings are invalid: {_reason(cause)}", "check TWOTOWER_* and .env"
    if type(err).__module__.startswith("cluster.corpora."):
        if isinstance(err, LookupError):
            return str(err), "`twotower corpus list` shows the stored corpora"
        return str(err), "docs/corpora.md describes the formats, fields and rules"
    if isinstance(err, LookupError) and type(err).__module__.split(".")[0] in FIRST_PARTY:
        return str(err), "GET /versions on the API lists the stored versions"
    if type(err).__module__.split(".")[0] in FIRST_PARTY or isinstance(err, TimeoutError):
        return str(err), "`twotower status` shows what runs and where"
    return None


class Cli(typer.Typer):
    """The app, run so that an expected failure (S3, PostgreSQL or Ray unreachable, an unknown
    version, a refused rollout, ...) prints one line and a hint, for every command alike;
    `--debug` shows the traceback instead."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except Exception as err:
            explained = None if DEBUG["on"] else explain(err)
            if explained is None:
                raise
            what, hint = explained
            typer.secho(f"twotower: {what}", fg="red", err=True)
            typer.echo(f"hint: {hint} (--debug shows the traceback)", err=True)
            sys.exit(1)


app = Cli(
    no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_show_locals=False
)


@app.callback()
def _options(
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of a failure."),
) -> None:
    DEBUG["on"] = debug


# --------------------------------------------------------------------------- local stack
@app.command()
def up(
    services_only: bool = typer.Option(
        False, "--services-only", help="Start PostgreSQL, S3 and Ray, nothing else."
    ),
) -> None:
    """Start the local stack (idempotent): services, a trained model, serving, the website."""
    from twotower.stack import up as stack_up

    stack_up(services_only=services_only)


@app.command()
def down() -> None:
    """Stop exactly what `up` started. Data stays in the state folder."""
    from twotower.stack import down as stack_down

    stack_down()


@app.command()
def status() -> None:
    """Show each service, its address and its health."""
    from twotower.stack import status as stack_status

    raise typer.Exit(stack_status())


# --------------------------------------------------------------------------- model
@app.command()
def train(
    profile: str = typer.Option(
        None, "--profile", help="quick (≤5 min) or full (≤45 min); default: settings.profile."
    ),
    overrides: list[str] = typer.Option(
        [],
        "--set",
        help="Change one setting of the profile: section.key=value, repeatable "
        "(e.g. --set train.epochs=3 --set train.next_token_weight=0 --set ablation=false).",
    ),
    publish: bool = typer.Option(
        True, "--publish/--no-publish", help="Make it LATEST, or only store it (experiments)."
    ),
    corpus: str = typer.Option(
        None,
        "--corpus",
        help="Train on an imported corpus (`twotower corpus import`) with no labelled queries, "
        "and index it; default: the shipped MS MARCO subset with its training data.",
    ),
    snapshot: str = typer.Option(None, "--snapshot", help="The corpus snapshot; default newest."),
    start: str = typer.Option(
        "release",
        "--start",
        help="With --corpus: release (fine-tune the shipped release version: fast) or scratch "
        "(word2vec and a new model trained on the corpus).",
    ),
    eval_queries: Path = typer.Option(
        None, "--eval-queries", help="With --corpus: your labelled queries (qid<TAB>query)."
    ),
    eval_qrels: Path = typer.Option(
        None, "--eval-qrels", help="With --corpus: their judgments (qid 0 doc_id rel)."
    ),
    train_queries: Path = typer.Option(
        None,
        "--train-queries",
        help="With --corpus: labelled queries to train on (a fifth held out, evaluated).",
    ),
    train_qrels: Path = typer.Option(None, "--train-qrels", help="Their judgments."),
) -> None:
    """Train a version on Ray Train, index, evaluate and store it; by default also publish it
    as the store's LATEST, which `up` and `rollout` serve."""
    from cluster.config import get_settings
    from training.datasets import read_qrels, read_queries
    from training.pipeline import get_profile, train_and_publish, with_overrides

    settings = get_settings()
    try:
        base = get_profile(profile or settings.profile)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--profile") from None
    try:
        with_overrides(base, overrides)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--set") from None
    if corpus is None:
        if snapshot or eval_queries or eval_qrels or train_queries or train_qrels:
            raise typer.BadParameter("needs --corpus", param_hint="--snapshot/--eval-*/--train-*")
        version = train_and_publish(settings, profile, overrides, publish)
    else:
        from training.corpus_pipeline import STARTS, train_corpus_and_publish

        if start not in STARTS:
            raise typer.BadParameter(f"choose one of {STARTS}", param_hint="--start")
        for queries_file, qrels_file, hint in (
            (eval_queries, eval_qrels, "--eval-queries/--eval-qrels"),
            (train_queries, train_qrels, "--train-queries/--train-qrels"),
        ):
            if (queries_file is None) != (qrels_file is None):
                raise typer.BadParameter("give both or neither", param_hint=hint)
        evals = {}
        if eval_queries is not None:
            evals["eval"] = (read_queries(eval_queries), read_qrels(eval_qrels))
        labels = None
        if train_queries is not None:
            labels = (read_queries(train_queries), read_qrels(train_qrels))
        version = train_corpus_and_publish(
            settings, corpus, snapshot, start, profile, overrides, evals, publish, labels
        )
    typer.echo(f"{'published' if publish else 'stored (not published)'} version {version}")
    if publish:
        from deployments.rollout import app_is_running, rollout

        if app_is_running(settings):  # the stack serves: switch it to the new version now
            typer.echo(f"live version: {rollout(settings)}")


@app.command("eval")
def evaluate(
    queries: str = typer.Option(..., "--queries", help="TREC topics: qid<TAB>query per line."),
    qrels: str = typer.Option(..., "--qrels", help="TREC qrels: qid 0 doc_id rel per line."),
    system: list[str] = typer.Option(
        ["rnn,bm25,meanpool,hybrid"],
        "--system",
        help="Systems to compare: comma-separated, or the option repeated.",
    ),
    version: str = typer.Option(
        None, "--version", help="Stored version id or a local version folder; default LATEST."
    ),
    run_out: str = typer.Option(None, "--run-out", help="Write one TREC run file per system."),
) -> None:
    """MRR@10, R@10, R@100 and nDCG@10 (ir-measures) of each system, one row per system."""
    from pathlib import Path

    from cluster.config import get_settings
    from training.evaluation.compare import (
        compare,
        format_table,
        load_eval_files,
        missing_systems,
        parse_systems,
        resolve_version,
    )

    settings = get_settings()
    try:
        systems = parse_systems(",".join(system))
        topics, judgments = load_eval_files(Path(queries), Path(qrels))
        version_dir = resolve_version(settings, version)
        for name, why in missing_systems(version_dir, systems).items():
            typer.echo(f"skipping {name}: {why}", err=True)
            systems.remove(name)
        if not systems:
            raise ValueError("no system left to evaluate")
        table = compare(
            version_dir,
            topics,
            judgments,
            systems,
            Path(run_out) if run_out else None,
            hybrid_weight=settings.hybrid_dense_weight,
        )
    except (ValueError, FileNotFoundError, LookupError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"version {version_dir.name}, {len(topics)} queries\n")
    typer.echo(format_table(table))


# --------------------------------------------------------------------------- the release
release_app = typer.Typer(
    no_args_is_help=True, help="The release version shipped in training/data/release."
)
app.add_typer(release_app, name="release")


@release_app.command("show")
def release_show() -> None:
    """What the shipped release is, how to reproduce it, and how well it ranks."""
    from training.release import RELEASE_DIR, ReleaseError, describe, read_release

    try:
        typer.echo(describe(read_release(RELEASE_DIR)), nl=False)
    except ReleaseError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


@release_app.command("import")
def release_import(
    live: bool = typer.Option(False, "--live", help="Also make it the live version (LATEST)."),
) -> None:
    """Check the release's checksums, build its index and store it as a version (`up` does
    this by itself when the store has no live version)."""
    from cluster.artifacts import ArtifactStore
    from cluster.config import get_settings
    from training.release import ReleaseError, import_release

    store = ArtifactStore.from_settings(get_settings())
    try:
        version = import_release(store)
    except ReleaseError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    if live:
        store.set_latest(version)
    typer.echo(f"{'live' if live else 'stored'}: version {version}")


@release_app.command("export")
def release_export(
    version: str = typer.Argument(..., help="A stored version id or a local version folder."),
    command: str = typer.Option(
        ..., "--command", help="The exact command that trained it, recorded in release.json."
    ),
    name: str = typer.Option("msmarco-full", "--name", help="The release's name."),
    commit: str = typer.Option(..., "--commit", help="The code commit that trained it."),
) -> None:
    """Pack a version as the shipped release (float16 weights, checksums, its metrics as
    imported). Maintainers only: commit training/data/release afterwards."""
    from cluster.config import get_settings
    from training.evaluation.compare import resolve_version
    from training.model import read_config
    from training.release import RELEASE_DIR, describe, export_release

    version_dir = resolve_version(get_settings(), version)
    training = read_config(version_dir).get("training", {})
    reproduce = {
        "command": command,
        "seed": training.get("seed"),
        "profile": training.get("profile"),
        "overrides": training.get("overrides", []),
        "commit": commit,
    }
    release = export_release(version_dir, RELEASE_DIR, reproduce, name)
    typer.echo(describe(release), nl=False)


# --------------------------------------------------------------------------- your documents
corpus_app = typer.Typer(
    no_args_is_help=True,
    help="Your own documents: import a file as a corpus, list and inspect corpora "
    "(docs/corpora.md).",
)
app.add_typer(corpus_app, name="corpus")


@corpus_app.command("import")
def corpus_import(
    file: str = typer.Argument(..., help="JSONL, CSV, TSV (each may be .gz) or Parquet."),
    name: str = typer.Option(..., "--name", help="The corpus: lowercase letters, digits, _ -."),
    fmt: str = typer.Option(
        None, "--format", help="jsonl, csv, tsv or parquet; default: from the file name."
    ),
    id_field: str = typer.Option("id", "--id-field", help="The field holding the id."),
    text_field: str = typer.Option("text", "--text-field", help="The field holding the text."),
    title_field: str = typer.Option("title", "--title-field", help="An optional title field."),
    url_field: str = typer.Option("url", "--url-field", help="An optional URL field."),
    metadata_field: str = typer.Option(
        "metadata", "--metadata-field", help="An optional JSON object (a JSON string in CSV/TSV)."
    ),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Import the good rows and leave bad ones out (default: refuse)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="A progress bar."),
) -> None:
    """Validate every row of FILE and store it as a new snapshot of corpus NAME; with a bad
    row, nothing is stored (exit 1) and the problems are listed by line."""
    from cluster.config import get_settings
    from cluster.corpora import CorpusStore, FieldMap

    fields = FieldMap(id_field, text_field, title_field, url_field, metadata_field)
    store = CorpusStore.from_settings(get_settings())
    report = store.import_file(file, name, fields, fmt, skip_bad=skip_bad, progress=progress)
    if report.snapshot is None:
        typer.echo(report.describe(), err=True)
        raise typer.Exit(1)
    typer.echo(report.describe())


@corpus_app.command("list")
def corpus_list() -> None:
    """Every corpus: its latest snapshot, documents, when it was imported."""
    from rich.console import Console
    from rich.table import Table

    from cluster.config import get_settings
    from cluster.corpora import CorpusStore

    rows = CorpusStore.from_settings(get_settings()).list_corpora()
    if not rows:
        typer.echo("no corpora yet: `twotower corpus import FILE --name NAME` adds one")
        return
    table = Table("name", "latest snapshot", "documents", "imported (UTC)", "snapshots", "source")
    for row in rows:
        table.add_row(
            row["name"],
            row["snapshot"],
            f"{row['count']:,}",
            row["created_at"][:19].replace("T", " "),
            str(row["snapshots"]),
            row["source"],
        )
    Console(width=200 if not sys.stdout.isatty() else None).print(table)


@corpus_app.command("show")
def corpus_show(
    name: str = typer.Argument(..., help="The corpus."),
    snapshot: str = typer.Option(None, "--snapshot", help="A snapshot id; default: LATEST."),
) -> None:
    """One snapshot's manifest: count, source, fields, skipped rows, files and checksums."""
    from cluster.config import get_settings
    from cluster.corpora import CorpusStore

    store = CorpusStore.from_settings(get_settings())
    manifest = store.manifest(name, snapshot)
    snapshots = store.snapshots(name)
    skipped = ", ".join(f"{k} {v}" for k, v in manifest.get("skipped_by_kind", {}).items())
    named = manifest.get("fields", {})
    fields = ", ".join(
        f"{k}={named[k]}" for k in ("id", "text", "title", "url", "metadata") if k in named
    )
    lines = [
        f"corpus     {manifest['name']}",
        f"snapshot   {manifest['snapshot']}"
        + (" (latest)" if manifest["snapshot"] == store.latest(name) else ""),
        f"imported   {manifest['created_at']}",
        f"documents  {manifest['count']:,}",
        f"source     {manifest.get('source')} ({manifest.get('format')}, "
        f"{manifest.get('source_bytes', 0):,} bytes)",
        f"fields     {fields}",
        f"skipped    {manifest.get('skipped', 0)}" + (f" ({skipped})" if skipped else ""),
    ]
    for rel, entry in manifest["files"].items():
        lines.append(f"file       {rel}  {entry['size']:,} bytes  sha256 {entry['sha256']}")
    lines.append(f"snapshots  {len(snapshots)}: {', '.join(snapshots)}")
    typer.echo("\n".join(lines))


# --------------------------------------------------------------------------- serving
@app.command()
def deploy(
    print_config: bool = typer.Option(
        False, "--print-config", help="Print the Serve config (YAML) for the live version only."
    ),
) -> None:
    """Deploy or refresh the Serve app from the settings (what `serve deploy` does with
    deployments/serve_config.yaml); a running app moves versions without downtime."""
    from cluster.config import get_settings

    settings = get_settings()
    if print_config:
        import yaml

        from deployments.app import serve_config
        from deployments.versions import target_version

        live = target_version(settings)
        typer.echo(yaml.safe_dump(serve_config(settings, [live], live), sort_keys=False))
        return
    from deployments.rollout import deploy as deploy_app

    deploy_app(settings)
    typer.echo(f"serving on {settings.api_base_url}")


@app.command()
def rollout(
    version: str = typer.Argument(None, help="Version to make live (default: the store's LATEST)."),
) -> None:
    """Switch the live model version with zero failed requests and no mixed versions."""
    from cluster.config import get_settings
    from deployments.rollout import rollout as do_rollout

    typer.echo(f"live version: {do_rollout(get_settings(), version)}")


@app.command()
def rollback() -> None:
    """Return to the previously live version, the same way as a rollout."""
    from cluster.config import get_settings
    from deployments.rollout import rollback as do_rollback

    typer.echo(f"live version: {do_rollback(get_settings())}")


@app.command()
def bench(
    requests: int = typer.Option(2000, "--requests", "-n", min=10, help="Requests per level."),
    max_seconds: float = typer.Option(60.0, "--max-seconds", help="Time cap per level."),
    concurrency: str = typer.Option("1,8,32", "--concurrency", help="Comma-separated levels."),
    scale: bool = typer.Option(True, "--scale/--no-scale", help="Also run the 1M-passage test."),
    scale_passages: int = typer.Option(1_000_000, "--scale-passages", min=10_000),
    served: bool = typer.Option(True, "--served/--no-served", help="Load-test the running app."),
    documents: bool = typer.Option(
        False,
        "--documents",
        help="Instead: upsert-to-searchable latency, and search p99 while documents are "
        "written at --write-rate (docs/corpora.md).",
    ),
    write_rate: float = typer.Option(100.0, "--write-rate", min=1, help="Documents a second."),
) -> None:
    """Load-test the running app on loopback and compare with the in-process bound."""
    from cluster.config import get_settings

    if documents:
        from rich.console import Console

        from monitoring.documents_bench import main as documents_main

        documents_main(get_settings(), 30, max_seconds, write_rate, Console())
        return
    from monitoring.bench import main as bench_main

    levels = [int(c) for c in concurrency.split(",") if c.strip()]
    bench_main(get_settings(), levels, requests, max_seconds, scale, scale_passages, served)


# --------------------------------------------------------------------------- model
# --------------------------------------------------------------------------- learning loop
@app.command()
def reinforce(
    now: bool = typer.Option(False, "--now", help="Run the learning loop once, right now."),
    start: bool = typer.Option(False, "--start", help="Start the periodic scheduler actor."),
    stop: bool = typer.Option(False, "--stop", help="Stop the periodic scheduler actor."),
) -> None:
    """The learning loop: `--now` runs it once; without options, show recent runs."""
    import json

    from cluster.config import get_settings

    settings = get_settings()
    if now:
        from learning.job import run_once

        result = run_once(settings, force=True)
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
        typer.echo(result.summary())
        raise typer.Exit(1 if result.status == "failed" else 0)
    if start or stop:
        from learning.scheduler import start_scheduler, stop_scheduler

        if start:
            start_scheduler(settings)
            typer.echo(f"scheduler running: every {settings.reinforce_interval_s}s")
        else:
            typer.echo("scheduler stopped" if stop_scheduler(settings) else "no scheduler")
        return
    from cluster.logstore import LogReader

    logs = LogReader(settings)
    try:
        for run in logs.list_runs(limit=10):
            typer.echo(json.dumps(run, default=str))
    finally:
        logs.close()


@app.command()
def simulate(
    queries: str = typer.Option(
        "",
        "--queries",
        help="Query pool: TREC topics (<top><num>…<title>…) or qid<TAB>query lines, .gz ok; "
        "default: the simulated dev half.",
    ),
    qrels: str = typer.Option(
        "", "--qrels", help="The pool's judgments: TREC qrels (qid 0 doc_id grade), .gz ok."
    ),
    sessions: int = typer.Option(200, "--sessions", "-k", min=1, help="People per day."),
    days: int = typer.Option(1, "--days", min=1, help="Simulated days (the next one is held out)."),
    zipf: float = typer.Option(1.0, "--zipf", min=0, help="P(popularity rank r) ∝ 1/r**S."),
    seed: int = typer.Option(1, "--seed", help="Seed of the plan (the first, with --repeats)."),
    bots: int = typer.Option(
        None, "--bots", min=0, help="Bot sessions in all; default: simulate_bot_share, rounded up."
    ),
    mode: str = typer.Option(None, "--mode", help="hybrid or dense; default: the stack's."),
    dwell: tuple[float, float] = typer.Option(
        (0.4, 1.0), "--dwell", help="Seconds a person pauses before each click: MIN MAX."
    ),
    repeats: int = typer.Option(
        0,
        "--repeats",
        min=0,
        help="0: the sessions, measured before and after (then run `twotower reinforce --now`). "
        "N: N trials, each from the same live version: sessions, a loop run, the changes.",
    ),
    concurrency: int = typer.Option(8, "--concurrency", min=1, max=64),
    report: str = typer.Option("", "--report", help="Also write the report as JSON here."),
    measure: bool = typer.Option(
        False,
        "--measure",
        help="Only measure the live stack on the held-out day the last simulation stored "
        "(e.g. after `twotower reinforce --now`); no sessions.",
    ),
) -> None:
    """Simulated traffic through the HTTP API: Zipf-popular queries over days, position-biased
    clicks, a few bots; the traffic-weighted MRR@10 of the held-out next day, before and after."""
    import dataclasses
    import json
    from pathlib import Path

    from cluster.config import get_settings
    from learning.traffic import PoolError, default_pool, load_pool
    from twotower import simulate as sim
    from twotower.traffic_plan import bot_count

    if measure:
        settings = get_settings()
        try:
            typer.echo(json.dumps(sim.measure_stored(settings, concurrency), indent=2))
        except LookupError as err:
            raise typer.BadParameter(str(err), param_hint="--measure") from None
        return
    if bool(queries) != bool(qrels):
        raise typer.BadParameter("give both or neither", param_hint="--queries/--qrels")
    if mode not in (None, "hybrid", "dense"):
        raise typer.BadParameter("hybrid or dense", param_hint="--mode")
    if not 0 <= dwell[0] <= dwell[1]:
        raise typer.BadParameter("need 0 <= MIN <= MAX", param_hint="--dwell")
    try:
        pool = load_pool(Path(queries), Path(qrels)) if queries else default_pool()
    except PoolError as err:
        raise typer.BadParameter(str(err), param_hint="--queries/--qrels") from None
    settings = get_settings()
    bots = bot_count(settings, sessions, days) if bots is None else bots
    traffic = sim.Traffic(sessions, days, zipf, seed, bots, concurrency, dwell, mode=mode)
    if repeats == 0:
        result = sim.simulate(settings, pool, traffic)
        text = json.dumps(result, indent=2, default=str)
    else:
        trials = sim.repeated_trials(settings, pool, traffic, repeats)
        text = json.dumps([dataclasses.asdict(t) for t in trials], indent=2, default=str)
    if report:
        Path(report).write_text(text + "\n")
    typer.echo(text)
    if repeats == 0:
        raise typer.Exit(1 if result["sessions"]["clicks"] == 0 else 0)
    typer.echo(sim.summary(trials))


# --------------------------------------------------------------------------- fault campaign
@app.command()
def chaos(
    scenario: list[str] = typer.Option(
        None, "--scenario", "-s", help="Only these: postgresql, encoder, shard, ingress, s3."
    ),
    outage_s: float = typer.Option(5.0, "--outage-seconds", min=1, max=60),
    clients: int = typer.Option(4, "--clients", min=1, max=16),
) -> None:
    """Faults under load on the local stack (PostgreSQL and S3 outages, a SIGKILLed replica
    of each kind); prints what was acknowledged and what reached PostgreSQL."""
    from cluster.config import get_settings
    from monitoring.chaos import Plan, main

    plan = Plan(clients=clients, outage_s=outage_s)
    raise typer.Exit(main(get_settings(), scenario or None, plan, echo=typer.echo))


if __name__ == "__main__":  # pragma: no cover
    app()
