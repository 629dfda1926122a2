"""Tiny local dataset repositories in the Hugging Face hub's layout, for tests that must not download.

A hub dataset repository holds one folder per config with parquet shards named
``{split}-{i:05d}-of-{n:05d}.parquet`` and declares its configs in README.md's YAML header;
``datasets.load_dataset(folder, config, split=...)`` reads such a folder exactly as it reads the hub.
The four sources of ``madx data fetch`` are built here with their real column names and types.
"""

from __future__ import annotations

from pathlib import Path

import datasets

from madx.data.wikiann import NER_TAGS

_List = getattr(datasets, "List", None) or datasets.Sequence


def write_hub_dataset(root: Path, configs: dict[str, dict[str, list[datasets.Dataset]]], default: str | None = None) -> Path:
    """configs: config -> split -> shards (one Dataset per parquet file)."""
    header = ["---", "configs:"]
    for config, splits in configs.items():
        header.append(f"- config_name: {config}")
        if config == default:
            header.append("  default: true")
        header.append("  data_files:")
        for split, shards in splits.items():
            for i, shard in enumerate(shards):
                path = root / config / f"{split}-{i:05d}-of-{len(shards):05d}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                shard.to_parquet(str(path))
            header += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    header.append("---")
    (root / "README.md").write_text("\n".join(header) + "\n", encoding="utf-8")
    return root


def wikiann_features() -> datasets.Features:
    return datasets.Features({
        "tokens": _List(datasets.Value("string")),
        "ner_tags": _List(datasets.ClassLabel(names=list(NER_TAGS))),
        "langs": _List(datasets.Value("string")),
        "spans": _List(datasets.Value("string")),
    })


def wikiann_split(lang: str, sentences: list[tuple[list[str], list[str]]]) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {"tokens": [t for t, _ in sentences], "ner_tags": [[NER_TAGS.index(g) for g in tags] for _, tags in sentences],
         "langs": [[lang] * len(t) for t, _ in sentences], "spans": [[] for _ in sentences]},
        features=wikiann_features(),
    )


def wikipedia_shard(lang: str, texts: list[str], start: int = 0) -> datasets.Dataset:
    ids = [str(start + i) for i in range(len(texts))]
    return datasets.Dataset.from_dict({
        "id": ids, "url": [f"https://{lang}.wikipedia.org/wiki?curid={i}" for i in ids],
        "title": [f"Article {i}" for i in ids], "text": texts,
    })


def squad_features(title: bool = True) -> datasets.Features:
    return datasets.Features({
        "id": datasets.Value("string"),
        **({"title": datasets.Value("string")} if title else {}),
        "context": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answers": {"text": _List(datasets.Value("string")), "answer_start": _List(datasets.Value("int32"))},
    })


def squad_split(rows: list[dict], title: bool = True) -> datasets.Dataset:
    columns = ["id", "title", "context", "question", "answers"] if title else ["id", "context", "question", "answers"]
    return datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in columns}, features=squad_features(title))


def qa_rows(prefix: str, paragraphs: list[tuple[str, str, list[tuple[str, str]]]]) -> list[dict]:
    """paragraphs: (title, context, [(question, answer text)]); answer_start is the text's first occurrence."""
    rows = []
    for p, (title, context, qas) in enumerate(paragraphs):
        for q, (question, answer) in enumerate(qas):
            start = context.index(answer)
            rows.append({"id": f"{prefix}-{p}-{q}", "title": title, "context": context, "question": question,
                         "answers": {"text": [answer], "answer_start": [start]}})
    return rows


# ---------------------------------------------------------------- the four sources of `madx data fetch`, in small

WIKIANN = {
    "en": {
        "train": [(["Ada", "Lovelace", "wrote", "notes"], ["B-PER", "I-PER", "O", "O"]),
                  (["Bank", "of", "Lima"], ["B-ORG", "I-ORG", "I-ORG"]),
                  (["Kyoto"], ["B-LOC"])],
        "validation": [(["Juma", "lives", "in", "Nairobi"], ["B-PER", "O", "O", "B-LOC"])],
        "test": [(["The", "river", "Amazon", "flows", "through", "Peru", "and", "Brazil", "."],
                  ["O", "O", "B-LOC", "O", "O", "B-LOC", "O", "B-LOC", "O"]),
                 (["Saint", "Petersburg", "(", "Russia", ")", "is", "an", "old", "city"],
                  ["B-LOC", "I-LOC", "O", "B-LOC", "O", "O", "O", "O", "O"]),
                 (["Lima"], ["B-LOC"])],
    },
    "qu": {
        "train": [(["Qusqu", "llaqta"], ["B-LOC", "O"])],
        "validation": [(["Lima", "llaqta"], ["B-LOC", "O"])],
        "test": [(["Inka", "Atawallpa", "Kashamarkapi", "wañurqan"], ["O", "B-PER", "B-LOC", "O"])],
    },
}

# Articles as wikimedia/wikipedia stores them: paragraphs separated by blank lines.
WIKIPEDIA = {
    "en": [
        ["The Amazon is a river.\n\nIn the north, the river Amazon flows through Peru and Brazil. It is long.\n\nReferences",
         "Lima\n\nLima is the capital of Peru.\n\nReferences",
         "Saint Petersburg (Russia) is an old city\n\nIt lies on the Neva.\r\nIt was founded in 1703.\u2028Its old name was Petrograd."],
        ["Lima is the capital of Peru.\n\nKyoto is in Japan.\n\n  \n\nReferences",
         "Kyoto was the capital of Japan.\n\nThe Kamo river flows through Kyoto."],
    ],
    "qu": [["Atawallpa inka karqan.\n\nInka Atawallpa Kashamarkapi wañurqan, ñawpa pachapi.\n\nQusqu hatun llaqtam."]],
}

SQUAD = {
    "train": qa_rows("train", [
        ("Amazon", "The Amazon flows through Peru and Brazil.", [("Where does it flow?", "Peru and Brazil")]),
        ("Amazon", "It is the largest river by discharge.", [("What is it?", "the largest river"), ("By what?", "discharge")]),
        ("Kyoto", "Kyoto was the capital of Japan for a millennium.", [("Capital of?", "Japan")]),
    ]),
    "validation": qa_rows("dev", [("Lima", "Lima is the capital of Peru.", [("Capital of?", "Peru")])]),
}

XQUAD = {
    "en": qa_rows("xq", [("", "Nairobi is the capital of Kenya.", [("Capital of?", "Kenya"), ("Which city?", "Nairobi")])]),
    "ar": qa_rows("xq", [("", "نيروبي هي عاصمة كينيا.", [("عاصمة؟", "كينيا")])]),
}


def build_sources(root: Path) -> dict[str, str]:
    """Writes the four datasets under ``root``: {"wikiann": path, "wikipedia": ..., "squad": ..., "xquad": ...}.
    WikiANN has en and qu, Wikipedia en (two shards) and qu, XQuAD en and ar; nothing else."""
    write_hub_dataset(root / "wikiann", {lang: {split: [wikiann_split(lang, s)] for split, s in splits.items()}
                                         for lang, splits in WIKIANN.items()})
    write_hub_dataset(root / "wikipedia", {
        f"20231101.{lang}": {"train": [wikipedia_shard(lang, texts, 100 * i) for i, texts in enumerate(shards)]}
        for lang, shards in WIKIPEDIA.items()})
    write_hub_dataset(root / "squad", {"plain_text": {split: [squad_split(rows)] for split, rows in SQUAD.items()}},
                      default="plain_text")
    write_hub_dataset(root / "xquad", {f"xquad.{lang}": {"validation": [squad_split(rows, title=False)]}
                                       for lang, rows in XQUAD.items()})
    return {name: str(root / name) for name in ("wikiann", "wikipedia", "squad", "xquad")}
