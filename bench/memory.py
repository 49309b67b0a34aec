"""Memory: PSS of the server (gunicorn master + worker) and its whole browser tree when ready,
with the product's flags and with candidate flags that may lower it (through
WHATSAPP_CHROME_ARGS, added to the tests' host-resolver rule). Flags are measured here,
never changed in the product."""
from __future__ import annotations

import shlex
import time
from pathlib import Path

from .common import TEST_ENV, Context, Row, is_ready, median, watch_status
from .procs import pss_breakdown

DYNO_MIB = 512
# Puppeteer's default list of features it turns off for automation (background services).
PUPPETEER_FEATURES = ("Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,"
                      "CalculateNativeWinOcclusion,InterestFeedContentSuggestions,"
                      "CertificateTransparencyComponentUpdater,AutofillServerCommunication,"
                      "PrivacySandboxSettings4,BackForwardCache")
# --renderer-process-limit=1 was a candidate until the product took it (browser.BASE_ARGS),
# and with it the "combined" one (it plus --disable-site-isolation).
CANDIDATES = {
    "baseline (product flags)": [],
    "--single-process": ["--single-process"],
    "--js-flags=--max-old-space-size=128": ["--js-flags=--max-old-space-size=128"],
    "--disable-features=<background services>": [f"--disable-features={PUPPETEER_FEATURES}"],
    "--disable-site-isolation": ["--disable-site-isolation-trials",
                                 "--disable-features=IsolateOrigins,site-per-process"],
    "--no-zygote": ["--no-zygote"],
    # --in-process-gpu was measured too (+7 to +36 MiB alone, never less): left out for time.
}
QUICK = ("baseline (product flags)", "--single-process")
SETTLE_S = 2.0
SAMPLES = 3


def measure(ctx: Context, linked: Path, extra: list[str]) -> dict:
    chrome_args = " ".join([TEST_ENV["WHATSAPP_CHROME_ARGS"], *map(shlex.quote, extra)])
    server = ctx.server(linked, {"WHATSAPP_CHROME_ARGS": chrome_args})
    try:
        t0 = time.monotonic()
        server.start(wait=False)
        try:
            ready_s = watch_status(server, is_ready, t0, timeout=60)[0]
        except RuntimeError as exc:
            return {"error": str(exc).splitlines()[0]}
        # A settled page (its first seconds are not its steady state), then a few samples.
        time.sleep(SETTLE_S)  # a dwell in `ready`, the same for every candidate
        samples = []
        for _ in range(SAMPLES):
            samples.append(pss_breakdown(server))
            time.sleep(0.5)  # the sampling interval
        best = sorted(samples, key=lambda s: s["total"])[len(samples) // 2]  # the median sample
        still = watch_status(server, lambda s: True, time.monotonic(), timeout=5)[1]["status"]
        return {**best, "ready_s": ready_s, "status_after": still}
    finally:
        server.stop()


def memory(ctx: Context, linked: Path) -> dict:
    """Each candidate once per round; rounds interleave so that drift falls on all alike."""
    names = QUICK if ctx.quick else tuple(CANDIDATES)
    rounds = 1 if ctx.quick else 2  # a sample now and then is ~80 MiB higher: more than one
    found: dict[str, list[dict]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            m = measure(ctx, linked, CANDIDATES[name])
            found[name].append(m)
            ctx.log(f"  memory {name}: " + (f"PSS {m['total']:.0f} MiB, alone {m['alone']:.0f} MiB, "
                                            f"USS {m['uss']:.0f} MiB, {m['processes']} processes, "
                                            f"ready in {m['ready_s']:.1f} s" if "total" in m else m["error"]))
    base = found[names[0]]

    def values(runs, key):
        return [m.get(key) for m in runs if key in m]

    base_pss, base_alone = values(base, "total"), values(base, "alone")
    rows = [
        # The README's name for it (tests/test_deploy.py reads that row).
        Row("memory (PSS) of gunicorn + the whole browser tree, ready (product flags)", "MiB",
            values(base, "total"), "", [], target=DYNO_MIB, absolute=True, note=_note(base)),
        Row("footprint alone (USS + shared once), baseline", "MiB", base_alone, "", [], target=DYNO_MIB,
            absolute=True, note="what the tree would use alone on a dyno; PSS here is lower because "
                                "others' Chromium processes share the binary's pages"),
    ]
    for name in names[1:]:
        # Compared as the footprint alone: PSS moves with whatever else shares Chromium's
        # pages on this machine (another test's browser), the footprint does not.
        runs = found[name]
        pss = median(values(runs, "total"))
        rows.append(Row(f"footprint alone, {name}", "MiB", values(runs, "alone") or [None], "baseline footprint alone",
                        base_alone, note="; ".join(p for p in (f"PSS {pss:.0f} MiB" if pss else "", _note(runs)) if p)))
    return {"rows": rows, "candidates": {k: v for k, v in found.items()}, "dyno_mib": DYNO_MIB,
            "baseline_median": median(base_pss)}


def _note(runs: list[dict]) -> str:
    good = [m for m in runs if "total" in m]
    if not good:
        return runs[0].get("error", "did not reach ready") if runs else ""
    m = good[0]
    return (f"server {m['server']:.0f} + browser {m['browser']:.0f} MiB PSS, {m['processes']} processes, "
            f"ready in {median([g['ready_s'] for g in good]):.1f} s, status after: {m['status_after']}")
