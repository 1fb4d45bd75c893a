"""What the organisation pays a month for its watch, counted from the exported templates.

    .venv/bin/python bench/cost_model.py [--sizes 100,1000,5000] [--rates 5,20,100] [--recipients 2] [--json]

Every billable resource is read from ``templates/*.yaml`` (what ``export`` writes and a reviewer reads), per
deployment unit: the member watch (one per member account, in us-east-1), the member forwarders (one per
member account and forward Region of the config), the management account's own watch and forwarders (one
account's worth), and the mail account's stack (one per organisation, when the export is in mail mode). Each
is priced from the one table of list prices in ``loginwatch_org/cost.py``, the same model ``plan`` prints its
cost line from. ``fixed`` is what the resources cost by existing; ``per sign-in`` is what every alerted
sign-in costs on its way (every sign-in alerted, policy ``all``: the upper bound), SES first.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loginwatch_org import cost
from loginwatch_org.config import load_config

ROOT = Path(__file__).resolve().parent.parent
# The fixed cost the design must stay under, per organisation size.
FIXED_TARGETS = {1000: 50.0, 5000: 250.0}


def exported_types(name: str, directory: Path) -> dict[str, int]:
    path = directory / f"{name}.yaml"
    return cost.body_resource_types(path.read_text(encoding="utf-8")) if path.exists() else {}


def units(accounts: int, forward_regions: int, directory: Path) -> list[cost.UnitCost]:
    watch = exported_types("watch", directory)
    forwarder = exported_types("forwarder", directory)
    management = Counter(watch)
    for kind, count in forwarder.items():
        management[kind] += count * forward_regions
    chosen = [
        cost.UnitCost("watch", accounts, watch),
        cost.UnitCost("forwarders", accounts * forward_regions, forwarder),
        cost.UnitCost("management", 1, dict(management)),
    ]
    mail = exported_types("mail", directory)
    if mail:
        chosen.append(cost.UnitCost("mail", 1, mail))
    return chosen


def monthly(accounts: int, rate: float, unit_costs: list[cost.UnitCost], path: cost.SigninPath) -> dict[str, Any]:
    fixed = sum(unit.fixed_monthly for unit in unit_costs)
    signins = (accounts + 1) * rate * cost.DAYS_PER_MONTH
    per_signin = cost.per_signin_usd(path)
    ses = signins * per_signin["SES"]
    other = signins * sum(value for key, value in per_signin.items() if key != "SES")
    total = fixed + ses + other
    return {
        "accounts": accounts,
        "signins_per_account_day": rate,
        "fixed_usd": round(fixed, 2),
        "ses_usd": round(ses, 2),
        "other_usage_usd": round(other, 2),
        "total_usd": round(total, 2),
        "per_account_usd": round(total / accounts, 4),
        "fixed_share": round(fixed / total, 3) if total else 0.0,
    }


def fixed_by_type(unit_costs: list[cost.UnitCost]) -> dict[str, float]:
    totals: Counter[str] = Counter()
    for unit in unit_costs:
        for kind, count in unit.types.items():
            price = cost.RESOURCE_PRICES.get(kind)
            if price is not None and price.price is not None:
                totals[kind] += unit.copies * count * price.monthly_usd
    return dict(totals)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,5000", help="member accounts, comma-separated")
    parser.add_argument("--rates", default="5,20,100", help="sign-ins per account and day, comma-separated")
    parser.add_argument("--recipients", type=float, default=2.0, help="recipients per alert email")
    parser.add_argument("-c", "--config", type=Path, default=ROOT / "config" / "accounts.yaml")
    parser.add_argument("--templates", type=Path, default=ROOT / "templates", help="the exported templates")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of the tables")
    args = parser.parse_args()

    config = load_config(args.config)
    forward_regions = len(config.forward_regions())
    path = cost.SigninPath(recipients=args.recipients)
    sizes = [int(value) for value in args.sizes.split(",")]
    rates = [float(value) for value in args.rates.split(",")]
    exported = [exported_types(name, args.templates) for name in ("watch", "forwarder", "mail")]
    unpriced = sorted({kind for types in exported for kind in cost.unpriced_types(types)})

    rows = [monthly(size, rate, units(size, forward_regions, args.templates), path) for size in sizes for rate in rates]
    if args.json:
        document = {
            "prices_read": cost.PRICES_READ,
            "forward_regions": forward_regions,
            "recipients": args.recipients,
            "unpriced_types": unpriced,
            "rows": rows,
            "fixed_by_type": {size: fixed_by_type(units(size, forward_regions, args.templates)) for size in sizes},
            "prices": [vars(price) for price in cost.PRICES],
        }
        print(json.dumps(document, indent=2))
        return 1 if unpriced else 0

    print(
        f"Monthly cost, list prices in us-east-1 read {cost.PRICES_READ}, no free tier; {forward_regions} forward "
        f"Regions; {args.recipients:g} recipients per email; every sign-in alerted."
    )
    print()
    header = ("accounts", 8), ("sign-ins/day", 12), ("fixed", 10), ("SES", 9), ("other", 7), ("total", 10)
    print("  ".join(f"{name:>{width}}" for name, width in header) + "  per account  fixed share")
    for row in rows:
        print(
            f"{row['accounts']:>8,}  {row['signins_per_account_day']:>12g}  {cost.usd(row['fixed_usd']):>10}  "
            f"{cost.usd(row['ses_usd']):>9}  {cost.usd(row['other_usage_usd']):>7}  {cost.usd(row['total_usd']):>10}  "
            f"{cost.usd(row['per_account_usd']):>11}  {row['fixed_share']:>11.0%}"
        )
    print()
    print("Fixed cost by resource type (everything else in the templates costs nothing by existing):")
    for size in sizes:
        breakdown = fixed_by_type(units(size, forward_regions, args.templates))
        parts = ", ".join(f"{kind} {cost.usd(value)}" for kind, value in sorted(breakdown.items())) or "nothing"
        target = FIXED_TARGETS.get(size)
        verdict = ""
        if target is not None:
            total = sum(breakdown.values())
            verdict = f"  (target at most {cost.usd(target)}: {'met' if total <= target else 'missed'})"
        print(f"  {size:>6,} accounts: {parts}{verdict}")
    print()
    per_signin = cost.per_signin_usd(path)
    print(
        "One alerted sign-in: "
        + ", ".join(f"{key} ${value * 1_000_000:,.2f}" for key, value in per_signin.items())
        + " per million."
    )
    print()
    print("Prices:")
    for price in cost.PRICES:
        print(f"  {price.name}: ${price.usd:.10g} per {price.unit} ({price.source})")
    if unpriced:
        print(f"\nUnpriced resource types in the templates: {', '.join(unpriced)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
