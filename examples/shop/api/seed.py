"""seed.py DATASET - the api's setup: replaces the products with those of DATASET.

Runs once per environment (ephemera's `setup:`), after redis is healthy.
"""
import json
import sys

from resp import Redis

DATASETS = {
    "natural": [
        {"name": "Espresso cup", "price": 7.5, "stock": 40},
        {"name": "French press", "price": 29.0, "stock": 12},
        {"name": "Coffee beans, 1 kg", "price": 18.9, "stock": 75},
        {"name": "Milk jug", "price": 11.0, "stock": 8},
        {"name": "Hand grinder", "price": 45.0, "stock": 5},
    ],
    # What breaks pages and APIs: markup, quotes, non-ASCII, empty and huge values.
    "edge-cases": [
        {"name": "<b>Bold</b> & \"quoted\" 'mug'", "price": 0, "stock": 0},
        {"name": "Caf\u00e9 cr\u00e8me \u2615 \u65e5\u672c\u8336", "price": 3.2, "stock": 1},
        {"name": "", "price": 1, "stock": 1},
        {"name": "x" * 300, "price": 999999.99, "stock": 2147483647},
        {"name": "Negative stock", "price": 0.01, "stock": -3},
        {"name": "Tab\tand\nnewline", "price": 12, "stock": 7},
    ],
}


def main():
    dataset = sys.argv[1] if len(sys.argv) > 1 else "natural"
    if dataset not in DATASETS:
        sys.exit("seed: unknown dataset %r (want one of: %s)" % (dataset, ", ".join(DATASETS)))
    with Redis.from_env() as r:
        r.call("DEL", "shop:products", "shop:next_id")
        for product in DATASETS[dataset]:
            product = dict(product, id=r.call("INCR", "shop:next_id"))
            r.call("RPUSH", "shop:products", json.dumps(product))
        r.call("SET", "shop:dataset", dataset)
    print("seed: %d products of dataset %s" % (len(DATASETS[dataset]), dataset), flush=True)


if __name__ == "__main__":
    main()
