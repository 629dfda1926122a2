"""Fetch the paper's data from the Hugging Face hub into the layout the shipped suites read.

    madx data fetch --out $MADX_DATA                                   # everything the paper suites read
    madx data fetch --out data --languages en,qu --tasks ner,mlm --max-text-mb 20
    madx data fetch --out data --tasks qa --revision xquad=<commit>   # pin one source
    madx data fetch --out $MADX_DATA --tasks mlm --paper-size          # each language's whole Wikipedia, as the paper
    madx data mlm-corpus --text data/text --wikiann data/wikiann --out data/text+wikiann

Writes wikiann/{train,dev,test}-{lang}.tsv, text/{lang}.txt, squad/{train,dev}-v1.1.json,
xquad/xquad.{lang}.json and MANIFEST.json (per file: source, config, split, revision, rows,
bytes, sha256). Text is capped at 100 MB per language by default (--max-text-mb); the paper
trained each language adapter on that language's whole Wikipedia (tens of GB for English, a few
MB for the smallest): --paper-size fetches that. A re-run skips files whose manifest entry matches. Exit status 0 when everything
asked for was found, 1 when a source lacks a language (listed at the end and in the manifest),
2 on an error.
"""

from __future__ import annotations

import os
from pathlib import Path

HELP = "download WikiANN, Wikipedia text, SQuAD and XQuAD into the suites' layout"

DEFAULT_MAX_TEXT_MB = 100.0  # madx.data.fetch.DEFAULT_MAX_TEXT_BYTES / 1e6 (tested equal; the parser must not import fetch)

MISSING_STATUS = 1


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    fetch = sub.add_parser("fetch", help="download into --out (default $MADX_DATA), writing MANIFEST.json last",
                           description=__doc__, formatter_class=parser.formatter_class)
    fetch.add_argument("--out", type=Path, default=None, help="data folder (default: $MADX_DATA)")
    fetch.add_argument("--languages", default=None,
                       help="comma-separated codes, e.g. en,qu (default: per task, the languages the paper suites use)")
    fetch.add_argument("--tasks", default="ner,qa,mlm", help="comma-separated, from ner, qa, mlm (default: all)")
    size = fetch.add_mutually_exclusive_group()
    size.add_argument("--max-text-mb", type=float, default=DEFAULT_MAX_TEXT_MB,
                      help=f"cap of each text/{{lang}}.txt in MB (10^6 bytes; default {DEFAULT_MAX_TEXT_MB:g}; 0: no cap)")
    size.add_argument("--paper-size", action="store_true",
                      help="each language's whole Wikipedia, as the paper trains on (no cap; English is tens of GB)")
    fetch.add_argument("--revision", action="append", default=[], metavar="[SOURCE=]REV",
                       help="hub revision (branch, tag, commit): REV for every source, or SOURCE=REV for one of "
                            "wikiann, wikipedia, squad, xquad; repeatable")
    fetch.add_argument("--wikiann-dataset", default="unimelb-nlp/wikiann", help="hub name or local folder")
    fetch.add_argument("--wikipedia-dataset", default="wikimedia/wikipedia", help="hub name or local folder")
    fetch.add_argument("--wikipedia-config", default="20231101.{lang}", help="config template ({lang}: the code)")
    fetch.add_argument("--wikipedia-text-column", default="text")
    fetch.add_argument("--squad-dataset", default="rajpurkar/squad", help="hub name or local folder")
    fetch.add_argument("--squad-config", default=None, help="default: the dataset's default config")
    fetch.add_argument("--xquad-dataset", default="google/xquad", help="hub name or local folder")
    fetch.add_argument("--xquad-config", default="xquad.{lang}", help="config template ({lang}: the code)")
    fetch.add_argument("--cache-dir", type=Path, default=None, help="datasets' cache (default: its own)")
    fetch.add_argument("--force", action="store_true", help="fetch again even files that are up to date")
    fetch.set_defaults(run=run_fetch)
    corpus = sub.add_parser("mlm-corpus", help="MLM text per language: text files plus WikiANN train/dev sentences, "
                                               "never a test sentence", description=CORPUS_DOC,
                            formatter_class=parser.formatter_class)
    corpus.add_argument("--out", required=True, type=Path, help="folder for {lang}.txt and MANIFEST.json")
    corpus.add_argument("--text", type=Path, default=None, help="folder of {lang}.txt files (e.g. $MADX_DATA/text)")
    corpus.add_argument("--wikiann", type=Path, default=None,
                        help="folder of {split}-{lang}.tsv files (e.g. $MADX_DATA/wikiann/rahimi-xtreme)")
    corpus.add_argument("--splits", default="train,dev", help="WikiANN splits to add: train, dev or both (default both)")
    corpus.add_argument("--languages", default=None, help="comma-separated codes (default: every language found)")
    corpus.set_defaults(run=run_mlm_corpus)


# here, not madx.data.corpus.__doc__: building the parser must not import the data stack (start-up time)
CORPUS_DOC = """Writes OUT/{lang}.txt: the text folder's {lang}.txt lines, then the WikiANN train/dev sentences
(tokens joined by spaces), each distinct line once, without any line that contains one of the
language's WikiANN test sentences; and OUT/MANIFEST.json (inputs with sha256, counts). Point a
suite's data.text at OUT. Exit status 1 when a language has no input, or no line left after filtering."""


def run(args) -> int:
    return args.run(args)


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def _revisions(values: list[str]) -> dict[str, str]:
    from madx.data.fetch import SOURCE_KINDS

    for value in values:
        kind, eq, _ = value.partition("=")
        if eq and kind not in SOURCE_KINDS:
            raise ValueError(f"--revision {value!r}: unknown source {kind!r}; sources are {', '.join(SOURCE_KINDS)}")
    everywhere = [v for v in values if "=" not in v]
    if len(everywhere) > 1:
        raise ValueError(f"--revision for every source given twice ({', '.join(everywhere)}); use SOURCE=REV for one source")
    revisions = dict.fromkeys(SOURCE_KINDS, everywhere[0]) if everywhere else {}
    for value in values:
        kind, eq, rev = value.partition("=")
        if eq and kind in SOURCE_KINDS:
            if not rev:
                raise ValueError(f"--revision {value!r}: no revision after '='")
            revisions[kind] = rev
    return revisions


def run_fetch(args) -> int:
    from madx.data.fetch import Sources, fetch

    out = args.out or (Path(os.environ["MADX_DATA"]) if os.environ.get("MADX_DATA") else None)
    if out is None:
        raise ValueError("no output folder: pass --out or set MADX_DATA")
    if args.max_text_mb < 0:
        raise ValueError(f"--max-text-mb must be >= 0 (0: no cap), got {args.max_text_mb:g}")
    sources = Sources(
        wikiann=args.wikiann_dataset, wikipedia=args.wikipedia_dataset, wikipedia_config=args.wikipedia_config,
        wikipedia_text_column=args.wikipedia_text_column, squad=args.squad_dataset, squad_config=args.squad_config,
        xquad=args.xquad_dataset, xquad_config=args.xquad_config, revisions=_revisions(args.revision),
    )
    report = fetch(
        out, languages=_split(args.languages), tasks=_split(args.tasks) or [], sources=sources,
        max_text_bytes=None if args.paper_size else round(args.max_text_mb * 1e6) or None, cache_dir=args.cache_dir,
        force=args.force,
        progress=lambda line: print(line, flush=True),
    )
    print(f"\n{out}: {len(report.written)} files written, {len(report.skipped)} up to date; manifest {report.manifest}")
    if report.missing:
        print(f"MISSING ({len(report.missing)}): the sources lack these; the suites' cells that need them cannot run")
        for m in report.missing:
            print(f"  {m['task']:<4} {m['language']:<4} {m['file']:<28} {m['reason']}")
        return MISSING_STATUS
    print("nothing missing")
    return 0


def run_mlm_corpus(args) -> int:
    from madx.data.corpus import build_mlm_corpus

    manifest = build_mlm_corpus(args.out, _split(args.languages), text_dir=args.text, wikiann_dir=args.wikiann,
                                splits=_split(args.splits) or [], say=lambda line: print(line, flush=True))
    print(f"{args.out}: {len(manifest['languages'])} corpora; manifest {args.out / 'MANIFEST.json'}")
    if manifest["missing"]:
        print(f"MISSING ({len(manifest['missing'])}): no input for {', '.join(manifest['missing'])}")
        return MISSING_STATUS
    return 0
