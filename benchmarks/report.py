"""Write docs/benchmarks.md and its plots from the JSON the benchmarks leave in bench-results/.

    .venv/bin/python benchmarks/report.py [--results bench-results] [--out docs/benchmarks.md]

Reads whatever is there — scan.json (bench_scan.py), peers.json (bench_peers.py),
rescan.json (bench_rescan.py), index.json and index-1m.json (bench_index.py), feedback*.json
(bench_feedback.py), keeper.json (bench_keeper.py), gpu.json (bench_gpu.py, written on
a GPU machine by scripts/gpu_bench.sh and copied here), model.json (bench_model.py) — and
writes one markdown page with the tables and PNG plots (matplotlib, from the bench extra) into
docs/benchmarks/. A missing file leaves its section out and says so; nothing is invented.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load(folder: Path, name: str) -> dict | None:
    path = folder / name
    return json.loads(path.read_text()) if path.is_file() else None


def table(rows: list[dict], keys: list[str], fmt: dict | None = None) -> list[str]:
    fmt = fmt or {}
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = []
        for k in keys:
            v = row.get(k, "")
            if v is None:
                v = "—"
            cells.append(fmt.get(k, "{:.3g}").format(v) if isinstance(v, float) else str(v))
        out.append("| " + " | ".join(cells) + " |")
    return out + [""]


def machine_line(data: dict) -> str:
    m = data.get("machine", {})
    load = m.get("load_average")
    return (f"Machine: {m.get('cpus', '?')} CPUs, device {m.get('device', 'cpu')}"
            + (f", load average at the start {', '.join(f'{x:.2f}' for x in load)}" if load else ""))


def scan_section(data: dict) -> list[str]:
    lines = ["## Scan stages (Caltech-101 photos, `bench_scan.py`)", "", machine_line(data),
             f"Model {data['model']} at {data['input']} px.", ""]
    return lines + table(data["rows"], ["stage", "items", "seconds", "per_s"],
                         {"seconds": "{:.2f}", "per_s": "{:.1f}"})


def peers_section(data: dict, plots: Path) -> list[str]:
    lines = ["## Scan throughput beside imagehash and imagededup (`bench_peers.py`)", "",
             machine_line(data) + f"; profile {data.get('profile')}.", ""]
    for name, block in data["sets"].items():
        lines += [f"### {name}: {block['photos']} photos", ""]
        for row in block["rows"]:
            if row.get("skipped") and not row.get("found"):
                row["found"] = f"skipped: {row['skipped']}"
        lines += table(block["rows"], ["tool", "photos", "seconds", "photos_per_s", "peak_rss_mb",
                                       "vs_imagededup_phash", "found"],
                       {"seconds": "{:.2f}", "photos_per_s": "{:.1f}", "peak_rss_mb": "{:.0f}",
                        "vs_imagededup_phash": "{:.2f}×"})
        lines += [f"![{name} throughput](benchmarks/peers-{name}.png)", ""]
        _bar(block["rows"], plots / f"peers-{name}.png", f"{name}: photos per second")
    return lines


def _bar(rows: list[dict], target: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    shown = [r for r in rows if isinstance(r.get("photos_per_s"), (int, float))]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(shown) + 1.2))
    values = [r["photos_per_s"] for r in shown]
    ax.barh([r["tool"] for r in shown], values, color="#4a7ab5")
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:,.1f}", va="center", fontsize=8)
    ax.set_xscale("log")  # a rescan is ~100× a cold scan; a log axis keeps both readable
    ax.invert_yaxis()
    ax.set_xlabel("photos / s, log scale (higher is better)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)


def index_section(data: dict, plots: Path) -> list[str]:
    lines = ["## Index at scale (`bench_index.py`)", "", machine_line(data) + ".", ""]
    for result in data["results"]:
        n = result["n"]
        lines += [f"### {result['dataset']}, {n:,} vectors of {result['dim']} dims", ""]
        lines += table(result["builds"], ["M", "ef_construction", "build_s", "vectors_per_s", "file_mb",
                                          "bytes_per_vector", "peak_growth_mb"],
                       {"build_s": "{:.1f}", "vectors_per_s": "{:.0f}", "file_mb": "{:.1f}",
                        "bytes_per_vector": "{:.0f}", "peak_growth_mb": "{:.0f}"})
        keys = ["M", "ef_construction", "ef", "recall", "recall_codes_only", "p50_ms", "p99_ms", "batch_qps"]
        lines += table(result["rows"], [k for k in keys if k in result["rows"][0]],
                       {"recall": "{:.4f}", "recall_codes_only": "{:.4f}", "p50_ms": "{:.3f}",
                        "p99_ms": "{:.3f}", "batch_qps": "{:.0f}"})
        if result.get("grouping"):
            lines += table([result["grouping"]], list(result["grouping"]))
        name = f"index-{result['dataset']}-{n}.png"
        lines += [f"![recall vs latency, {result['dataset']}, {n:,}](benchmarks/{name})", ""]
        _curve(result["rows"], plots / name, f"{result['dataset']}, {n:,} vectors: recall@10 vs p50 latency")
    if data.get("catalog"):
        lines += ["Storage per photo:", ""] + table([data["catalog"]], list(data["catalog"]))
    if data.get("default_model_storage"):
        d = data["default_model_storage"]
        lines += [f"The default model ({_default_name(d)}) stores {_default_vectors(d)} per photo: index "
                  f"{d['index_bytes_per_photo']:,.0f} + catalog {d['catalog_bytes_per_photo']:,.0f} = "
                  f"{d['total_bytes_per_photo']:,.0f} bytes per photo.", ""]
    return lines


def _default_name(d: dict) -> str:
    return d.get("model") or "the pretrained lite0-imagenet-gem"


def _default_vectors(d: dict) -> str:
    """'one 1280-d vector' (older results say only 'dim') or 'a 512-d and a 256-d vector'."""
    dims = list((d.get("dims") or {"": d.get("dim")}).values())
    if len(dims) == 1:
        return f"one {dims[0]}-d vector"
    return ", ".join(f"a {x}-d" for x in dims[:-1]) + f" and a {dims[-1]}-d vector"


def _curve(rows: list[dict], target: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in sorted({(r["M"], r["ef_construction"]) for r in rows}):
        pts = sorted((r["p50_ms"], r["recall"]) for r in rows if (r["M"], r["ef_construction"]) == key)
        ax.plot(*zip(*pts), marker="o", label=f"M={key[0]}, efC={key[1]}")
    ax.axhline(0.98, color="grey", linestyle=":", label="recall 0.98")
    ax.set_xlabel("p50 latency per query, ms")
    ax.set_ylabel("recall@10 vs exact")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)


def rescan_section(data: dict) -> list[str]:
    s, n = data["summary"], data["files"]
    lines = ["## Unchanged rescan of a large library (`bench_rescan.py`)", "", machine_line(data) + ".",
             f"{n:,} tiny distinct JPEGs, model {data['model']} (heads "
             f"{', '.join(f'{h} {d}-d' for h, d in data['dims'].items())}). The catalog was filled by a "
             "real scan with a stand-in embedder (random vectors; not measured); the rescan below, from "
             "a newly opened library, never loads the model. Median of "
             f"{len(data['runs'])} rescans; files and catalog in the OS cache.", ""]
    total = s["rescan_s"]
    rows = [{"stage": ("↳ " if r["within"] else "") + r["stage"], "seconds": r["seconds"],
             "share": f"{100 * r['seconds'] / total:.0f} %" if total else "—"} for r in s["stages"]]
    rows.append({"stage": "**rescan, total**", "seconds": total, "share": "100 %"})
    lines += table(rows, ["stage", "seconds", "share"], {"seconds": "{:.2f}"})
    target = data["target"]
    return lines + [f"{s['files_per_s']:,.0f} files/s (opening the library: {s['open_s']:.2f} s); target "
                    f"{target['files']:,} files in {target['seconds']:.0f} s: "
                    f"{'met' if s['meets_target'] else 'not met'} (100k at this rate: "
                    f"{s['projected_100k_s']:.1f} s).", ""]


def gpu_section(data: dict | None) -> list[str]:
    lines = ["## GPU (`bench_gpu.py`, `scripts/gpu_bench.sh`)", ""]
    if data is None:
        return lines + ["No GPU run on record: `scripts/gpu_bench.sh` on a CUDA machine writes "
                        "`bench-results/gpu.json`; copy it here and rerun this report.", ""]
    m = data.get("machine", {})
    if not str(data.get("device", "")).startswith("cuda") or data.get("smoke"):
        size = " at smoke size" if data.get("smoke") else ""
        lines += [f"The run on record was on {data.get('device')}{size}: it checks the code, it "
                  "measures no GPU.", ""]
    lines += [f"Device {data.get('device')} ({m.get('gpu', m.get('machine', '?'))}), {m.get('cpus', '?')} "
              f"CPUs, torch {m.get('torch', '?')}, torchvision {m.get('torchvision', '?')}; "
              f"model {data.get('model')}.", ""]
    rows = []
    for r in data["rows"]:
        share = data.get("summary", {}).get(r["set"], {}).get(f"{r['row']}_vs_nvjpeg")
        rows.append({"set": r["set"], "measurement": r["label"], "images": r.get("images"),
                     "seconds": r.get("seconds"), "per_s": r.get("per_s"),
                     "vs_nvjpeg": f"{100 * share:.0f} %" if share else None,
                     "notes": f"skipped: {r['skipped']}" if "skipped" in r else r.get("note", "")})
    lines += table(rows, ["set", "measurement", "images", "seconds", "per_s", "vs_nvjpeg", "notes"],
                   {"seconds": "{:.2f}", "per_s": "{:,.1f}"})
    twelve = data.get("summary", {}).get("12mp", {})
    if twelve.get("meets_target") is not None:
        lines += [f"12 MP end to end: {100 * twelve['e2e-gpu_vs_nvjpeg']:.0f} % of the nvJPEG ceiling "
                  f"(target ≥ {100 * data['target']['e2e_vs_nvjpeg_12mp']:.0f} %): "
                  f"{'met' if twelve['meets_target'] else 'not met'}.", ""]
    return lines


def _gpu_bullet(gpu: dict | None) -> str:
    if gpu is None or not str(gpu.get("device", "")).startswith("cuda") or gpu.get("smoke"):
        return ("- GPU: no GPU run on record (`scripts/gpu_bench.sh` on a CUDA machine writes "
                "`bench-results/gpu.json`).")
    twelve = gpu.get("summary", {}).get("12mp", {})
    if twelve.get("e2e-gpu_vs_nvjpeg") is None:
        return (f"- GPU ({gpu['machine'].get('gpu', gpu['device'])}): see the GPU section "
                "(no 12 MP ratio recorded).")
    return (f"- GPU ({gpu['machine'].get('gpu', gpu['device'])}): 12 MP scan end to end "
            f"{twelve['e2e-gpu_per_s']:,.0f} photos/s = {100 * twelve['e2e-gpu_vs_nvjpeg']:.0f} % of the "
            f"nvJPEG ceiling ({twelve['nvjpeg_per_s']:,.0f}/s; target ≥ 70 %).")


def feedback_section(data: dict) -> list[str]:
    """Learning from a simulated person's decisions (``bench_feedback.py``): its own table."""
    return ["## Learning from review decisions (`bench_feedback.py`)", "",
            f"Machine: 2-core CPU; {data['seconds']:.0f} s in all.", "", data["markdown"], ""]


def keeper_section(data: dict) -> list[str]:
    return [data["markdown"], ""]


def summary(peers: dict | None, index: list | None, rescan: dict | None = None,
            gpu: dict | None = None) -> list[str]:
    """The headline ratios, computed from the same JSON as the tables below."""
    lines = ["## Summary", ""]
    for name, block in (peers or {}).get("sets", {}).items():
        rows = {r["tool"]: r for r in block["rows"]}
        cold, ceiling = rows.get("lookalike-cold", {}), rows.get("ceiling-combined", {})
        dedup = rows.get("imagededup-phash", {})
        if cold.get("photos_per_s") and ceiling.get("photos_per_s") and dedup.get("photos_per_s"):
            lines.append(f"- {name} ({block['photos']} photos): cold scan {cold['photos_per_s']:.1f} photos/s = "
                         f"{cold['photos_per_s'] / ceiling['photos_per_s']:.0%} of the CPU ceiling "
                         f"(decode + forward on the same cores, {ceiling['photos_per_s']:.1f}/s), "
                         f"{cold['photos_per_s'] / dedup['photos_per_s']:.2f}× imagededup PHash "
                         f"({dedup['photos_per_s']:.1f}/s); unchanged rescan "
                         f"{rows.get('lookalike-rescan', {}).get('photos_per_s', 0):,.0f} photos/s.")
    for data in [d for d in (index or []) if d]:
        default = data.get("default_model_storage")
        for result in data.get("results", []):
            rec, grp = result.get("recommended") or {}, result.get("grouping") or {}
            if not rec:
                continue
            note = (f"; the default model ({_default_name(default)}), {_default_vectors(default)}: "
                    f"{default['total_bytes_per_photo']:,.0f}" if default else "")
            lines.append(f"- index, {result['dataset']} {result['n']:,} × {result['dim']}: M={rec['M']}, "
                         f"ef={rec['ef']} gives recall@10 {rec['recall']:.3f}, p50 {rec['p50_ms']:.2f} ms, "
                         f"p99 {rec['p99_ms']:.2f} ms; full duplicate grouping {grp.get('total_s', 0):.1f} s; "
                         f"{result.get('total_bytes_per_photo', 0):,.0f} bytes per photo (index + catalog, "
                         f"two {result['dim']}-d heads{note}).")
    if rescan:
        r = rescan["summary"]
        lines.append(f"- unchanged rescan, {rescan['files']:,} files: {r['rescan_s']:.1f} s "
                     f"({r['files_per_s']:,.0f} files/s; the target rate, 100k files in 10 s, is "
                     f"{'met' if r['meets_target'] else 'not met'}).")
    lines += [_gpu_bullet(gpu), ""]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(ROOT / "bench-results"))
    parser.add_argument("--out", default=str(ROOT / "docs/benchmarks.md"))
    args = parser.parse_args()
    results, out = Path(args.results), Path(args.out)
    plots = out.parent / "benchmarks"
    plots.mkdir(parents=True, exist_ok=True)
    lines = ["# Benchmarks", "", "Written by `benchmarks/report.py` from `bench-results/*.json` "
             "(`make bench`). Numbers depend on the machine and its load: each section names them.", ""]
    indexes = [load(results, "index.json"), load(results, "index-1m.json")]
    lines += summary(load(results, "peers.json"), indexes, load(results, "rescan.json"), load(results, "gpu.json"))
    sections = [("scan.json", scan_section, False), ("peers.json", peers_section, True),
                ("rescan.json", rescan_section, False), ("index.json", index_section, True),
                ("index-1m.json", index_section, True), ("feedback.json", feedback_section, False),
                ("feedback-angular.json", feedback_section, False), ("keeper.json", keeper_section, False)]
    for name, make, wants_plots in sections:
        data = load(results, name)
        if data is None:
            lines += [f"*{name} not found: run the benchmark that writes it.*", ""]
            continue
        lines += make(data, plots) if wants_plots else make(data)
    lines += gpu_section(load(results, "gpu.json"))
    lines += ["## Model quality", "", "See `docs/model-card.md` (`make bench-model`).", ""]
    out.write_text("\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
