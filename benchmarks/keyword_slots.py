"""What each keyword slot of trained cascaded models says over the test set: hit rate, subwords used, top picks.

    python benchmarks/keyword_slots.py artifacts/runs/11_cascaded/best.pt OTHER_RUN/best.pt [--json out.json]

For every slot of every checkpoint: the top-1 hit rate against the caption's content words (the `kw_top1` measure),
the perplexity of the slot's picks over the split (how many subwords it really uses), how many distinct subwords it
picks, and its most frequent picks with their shares. Compares runs that scored differently: a collapsed slot has a
low perplexity; a slot that learned a private code picks words that are not in the captions. Reads the cached
features and pocket backbones under --artifacts (notebooks 01 and 10 make them).
"""
import argparse
import collections
import json
import math

import torch

from speechclip import load_config
from speechclip.evaluation import caption_subwords, embed_split
from speechclip.features import collate_features
from speechclip.model import load_model
from speechclip.pipeline import prepare


def slot_report(model, emb: dict) -> list[dict]:
    ids = emb["keyword_ids"].long()  # (N, K) reduced-vocabulary positions
    refs = caption_subwords(model, emb["texts"], content_only=True)
    vocab_ids, n = model.clip.vocab_ids.cpu(), len(ids)
    rows = []
    for k in range(ids.shape[1]):
        picks = ids[:, k].tolist()
        counts = collections.Counter(picks)
        shares = [c / n for c in counts.values()]
        rows.append({
            "slot": k + 1,
            "top1_hit": 100.0 * sum(int(vocab_ids[p]) in r for p, r in zip(picks, refs)) / n,
            "perplexity": math.exp(-sum(q * math.log(q) for q in shares)),
            "distinct": len(counts),
            "top": [(model.clip.decode_vocab([p])[0], round(100.0 * c / n, 1)) for p, c in counts.most_common(4)],
        })
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--data", default="data/synthetic_cpu")
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument("--split", default="test")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config("pocket", "cascaded", {"data.root": args.data})
    exp = prepare(cfg, args.artifacts, splits=("train", args.split))
    out = {}
    for path in args.checkpoints:
        model = load_model(path, exp.speech_encoder, exp.clip)
        rows = slot_report(model, embed_split(model, exp.features[args.split], collate_features, 64))
        out[path] = rows
        print(path)
        for r in rows:
            print(f"  slot {r['slot']}: top-1 hit {r['top1_hit']:4.1f}  perplexity {r['perplexity']:4.1f}  "
                  f"subwords {r['distinct']:2d}  most picked {r['top']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
