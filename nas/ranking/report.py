"""The ranking check's report as text (``nas supernet rank`` without ``--json``)."""
from __future__ import annotations

from typing import Any


def _interval(a: dict[str, Any]) -> str:
    return f"{a['value']:+.2f} [{a['low']:+.2f}, {a['high']:+.2f}]"


def print_report(report: dict[str, Any]) -> None:
    floor, recipe = report["noise_floor"], report["standalone_recipe"]
    print(f"ranking check of {report['supernet']} (space {report['space']!r}, {report['classes']} classes) on "
          f"{report['val']}: {len(report['archs'])} archs spread over the {report['device']} latency range, each "
          f"trained alone for {recipe['epochs']} epochs with the supernet's recipe")
    print(f"\n  {'arch':<10} {'latency ms':>10} {'stand-alone':>11} {'inherited':>9} {'capacity':>8} {'params M':>8}")
    for a in report["archs"]:
        print(f"  {a['name']:<10} {a['latency_ms']:10.3f} {a['standalone_top1']:10.1f}% {a['inherited']:8.1f}% "
              f"{a['capacity']:8.4f} {a['params']:8.3f}")
    print(f"\n  {'score vs stand-alone top-1':<26} {'Kendall tau [95%]':>22} {'Spearman rho [95%]':>22} "
          f"{'top-' + str(report['top_k']) + ' overlap':>14}")
    for name, a in report["agreement"].items():
        print(f"  {name:<26} {_interval(a['kendall_tau']):>22} {_interval(a['spearman_rho']):>22} "
              f"{a['top_k_overlap']['value']:>14.2f}")
    print(f"\nnoise floor: {floor['arch']} trained {len(floor['top1'])} times: "
          + ", ".join(f"{v:.1f}%" for v in floor["top1"])
          + f" (std {floor['std']:.2f} points, against {floor['standalone_spread_std']:.2f} across archs); a perfect "
            f"ranking would measure tau {floor['tau_ceiling']:.2f} at this noise")
    print(f"verdict: {report['verdict']}")
    print(f"report {report['out']}/report.json, plot {report['plot']} ({report['wall_s']:.0f} s)")
