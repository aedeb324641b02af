"""Example data generators: the retail product feed used by examples/retail and by the benchmarks.

The retailer of the example runs one campaign across 40 product categories and six US regions with different
seasonal timing (see examples/retail/README.md). :func:`generate_retail_feed` writes its product feed as a Google
Merchant Center style TSV: the same seed gives byte-identical output, so the committed examples/retail/feed.tsv
can be regenerated and compared::

    python -c "from dco_local.examples import generate_feed_file; generate_feed_file('examples/retail/feed.tsv')"
"""

from __future__ import annotations

import random
from pathlib import Path

__all__ = [
    "RETAIL_CATEGORIES",
    "RETAIL_REGIONS",
    "RETAIL_BRANDS",
    "FEED_COLUMNS",
    "generate_retail_feed",
    "generate_feed_file",
]

RETAIL_CATEGORIES: tuple[str, ...] = (
    "outerwear", "boots", "sneakers", "sandals", "swimwear", "raincoats", "sweaters", "t-shirts", "jeans",
    "dresses", "activewear", "hiking-gear", "camping", "grills", "patio", "gardening", "snow-gear",
    "ski-equipment", "fans", "heaters", "bedding", "kitchenware", "cookware", "small-appliances", "electronics",
    "headphones", "toys", "games", "books", "beauty", "skincare", "sunscreen", "fragrance", "jewelry", "watches",
    "bags", "pet-supplies", "home-decor", "lighting", "tools",
)
RETAIL_REGIONS: tuple[str, ...] = ("pnw", "northeast", "southeast", "midwest", "southwest", "california")

RETAIL_BRANDS: tuple[str, ...] = (
    "Northwind", "Cedar & Pine", "Summit Line", "Harbor Goods", "Copperfield", "Bluebird", "Ironwood",
    "Maple Row", "Tidewater", "Granite Peak", "Sunward", "Fieldstone", "Lumen", "Brightside", "Oak & Ember",
    "Riverbend", "Silver Fox", "Wildflower", "Alder", "Canyon Co.", "Driftwood", "Evergreen", "Foxglove",
    "Glacier", "Heron", "Juniper", "Kestrel", "Larkspur", "Meadowlark", "Nimbus", "Orchard", "Pinecrest",
    "Quarry", "Redwood", "Sagebrush", "Thistle", "Upland", "Vireo", "Willow", "Yarrow", "Zephyr", "Aster",
    "Birchbark", "Cobalt", "Dune", "Ember", "Fjord", "Grove", "Hollow", "Indigo", "Jasper", "Kinfolk",
    "Lantern", "Mistral", "Nomad", "Onyx", "Prairie", "Quill", "Rook", "Solstice",
)

FEED_COLUMNS: tuple[str, ...] = (
    "id", "title", "description", "link", "image_link", "additional_image_link", "availability", "price",
    "sale_price", "brand", "product_type", "custom_label_0", "custom_label_1", "shipping_country", "popularity",
)

# category -> (product nouns, price range in dollars, season label)
_CATALOG: dict[str, tuple[tuple[str, ...], tuple[float, float], str]] = {
    "outerwear": (("Parka", "Puffer Jacket", "Fleece Jacket", "Wool Coat", "Windbreaker"), (49, 349), "winter"),
    "boots": (("Hiking Boots", "Chelsea Boots", "Snow Boots", "Work Boots", "Rain Boots"), (59, 249), "winter"),
    "sneakers": (("Running Shoes", "Court Sneakers", "Trail Runners", "Slip-On Sneakers"), (45, 180), "all-season"),
    "sandals": (("Slide Sandals", "Sport Sandals", "Flip Flops", "Strappy Sandals"), (15, 90), "summer"),
    "swimwear": (("Swim Trunks", "One-Piece Swimsuit", "Bikini Set", "Rash Guard"), (19, 95), "summer"),
    "raincoats": (("Rain Shell", "Packable Rain Jacket", "Trench Raincoat", "Rain Poncho"), (29, 199), "spring"),
    "sweaters": (("Crewneck Sweater", "Cardigan", "Cable Knit Sweater", "Turtleneck"), (29, 149), "fall"),
    "t-shirts": (("Crew Tee", "V-Neck Tee", "Graphic Tee", "Pocket Tee"), (9, 39), "summer"),
    "jeans": (("Slim Jeans", "Straight Jeans", "Relaxed Jeans", "Bootcut Jeans"), (29, 119), "all-season"),
    "dresses": (("Wrap Dress", "Maxi Dress", "Shirt Dress", "Midi Dress"), (29, 159), "spring"),
    "activewear": (("Leggings", "Training Shorts", "Sports Bra", "Quarter-Zip Pullover"), (19, 89), "all-season"),
    "hiking-gear": (("Daypack", "Trekking Poles", "Hydration Pack", "Hiking Socks"), (12, 179), "summer"),
    "camping": (("Two-Person Tent", "Sleeping Bag", "Camp Stove", "Camp Chair", "Lantern"), (19, 399), "summer"),
    "grills": (("Charcoal Grill", "Gas Grill", "Pellet Smoker", "Portable Grill"), (79, 899), "summer"),
    "patio": (("Patio Umbrella", "Outdoor Dining Set", "Adirondack Chair", "Fire Pit"), (39, 1299), "summer"),
    "gardening": (("Garden Hose", "Raised Bed Kit", "Pruning Shears", "Planter Set"), (9, 149), "spring"),
    "snow-gear": (("Snow Shovel", "Ice Scraper", "Snow Pants", "Insulated Gloves"), (12, 159), "winter"),
    "ski-equipment": (("All-Mountain Skis", "Ski Goggles", "Ski Helmet", "Ski Poles"), (39, 799), "winter"),
    "fans": (("Tower Fan", "Box Fan", "Pedestal Fan", "Desk Fan"), (19, 179), "summer"),
    "heaters": (("Space Heater", "Oil-Filled Radiator", "Infrared Heater", "Heated Throw"), (29, 229), "winter"),
    "bedding": (("Sheet Set", "Down Comforter", "Duvet Cover", "Pillow Pair"), (25, 299), "all-season"),
    "kitchenware": (("Knife Block Set", "Cutting Board", "Mixing Bowls", "Utensil Set"), (12, 199), "all-season"),
    "cookware": (("Cast Iron Skillet", "Nonstick Pan Set", "Dutch Oven", "Stockpot"), (24, 349), "fall"),
    "small-appliances": (("Blender", "Air Fryer", "Coffee Maker", "Stand Mixer", "Toaster"), (29, 449), "all-season"),
    "electronics": (("Smart Speaker", "Streaming Stick", "Tablet", "Portable Charger"), (19, 599), "all-season"),
    "headphones": (("Wireless Earbuds", "Over-Ear Headphones", "Sport Earphones"), (19, 349), "all-season"),
    "toys": (("Building Blocks Set", "Plush Bear", "Remote Control Car", "Puzzle Cube"), (9, 129), "holiday"),
    "games": (("Board Game", "Card Game", "Party Game", "Strategy Game"), (12, 79), "holiday"),
    "books": (("Cookbook", "Trail Guide", "Mystery Novel", "Gardening Handbook"), (9, 45), "all-season"),
    "beauty": (("Lip Color Set", "Makeup Brush Kit", "Hair Dryer", "Nail Polish Trio"), (9, 149), "all-season"),
    "skincare": (("Moisturizer", "Vitamin C Serum", "Face Cleanser", "Night Cream"), (12, 89), "all-season"),
    "sunscreen": (("SPF 50 Lotion", "SPF 30 Spray", "Mineral Sunscreen Stick", "After-Sun Gel"), (7, 39), "summer"),
    "fragrance": (("Eau de Parfum", "Eau de Toilette", "Body Mist", "Cologne"), (25, 149), "holiday"),
    "jewelry": (("Pendant Necklace", "Hoop Earrings", "Charm Bracelet", "Stacking Rings"), (19, 499), "holiday"),
    "watches": (("Field Watch", "Smartwatch", "Dive Watch", "Chronograph"), (49, 699), "holiday"),
    "bags": (("Tote Bag", "Backpack", "Crossbody Bag", "Weekender Duffel"), (24, 249), "all-season"),
    "pet-supplies": (("Dog Bed", "Cat Tree", "Leash and Collar Set", "Pet Carrier"), (12, 199), "all-season"),
    "home-decor": (("Throw Pillow", "Wall Mirror", "Table Vase", "Area Rug"), (15, 399), "fall"),
    "lighting": (("Table Lamp", "Floor Lamp", "String Lights", "Pendant Light"), (15, 299), "fall"),
    "tools": (("Cordless Drill", "Socket Set", "Tool Bag", "Laser Level"), (19, 299), "all-season"),
}

_ADJECTIVES: tuple[str, ...] = (
    "Classic", "Essential", "Lightweight", "Heritage", "Everyday", "Premium", "Compact", "Insulated", "Ultra",
    "Trail", "Coastal", "Urban", "Modern", "Rugged", "Soft", "Pro",
)
_COLORS: tuple[str, ...] = (
    "Black", "Navy", "Olive", "Charcoal", "Sand", "Rust", "Forest Green", "Slate Blue", "Ivory", "Red",
)
_PRICE_ENDINGS: tuple[float, ...] = (0.99, 0.99, 0.99, 0.95, 0.5, 0.0)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-").replace("--", "-")


def generate_retail_feed(n: int, seed: int = 7) -> bytes:
    """A realistic UTF-8 TSV product feed of ``n`` products for the example retailer; deterministic per seed.

    Columns are :data:`FEED_COLUMNS` (Google Merchant Center names): ``product_type`` is one of
    :data:`RETAIL_CATEGORIES`, ``custom_label_0`` a region of :data:`RETAIL_REGIONS` for about 30% of products
    (regional assortment, else empty), ``custom_label_1`` the selling season, ``shipping_country`` mostly "US",
    ``popularity`` a relative sales weight (log-normal around 1; a custom numeric column for ``scale`` boosts).
    """
    rng = random.Random(seed)
    brands_of = {
        category: tuple(rng.sample(RETAIL_BRANDS, 8)) for category in RETAIL_CATEGORIES
    }
    lines = ["\t".join(FEED_COLUMNS)]
    for index in range(n):
        category = RETAIL_CATEGORIES[rng.randrange(len(RETAIL_CATEGORIES))]
        nouns, (low, high), season = _CATALOG[category]
        brand = rng.choice(brands_of[category])
        noun = rng.choice(nouns)
        adjective = rng.choice(_ADJECTIVES)
        color = rng.choice(_COLORS)
        title = f"{brand} {adjective} {noun} - {color}"
        product_id = f"SKU-{index + 1:07d}"
        slug = _slug(f"{adjective} {noun} {color}")
        dollars = int(rng.uniform(low, high))
        price = dollars + rng.choice(_PRICE_ENDINGS)
        sale = ""
        if rng.random() < 0.2:
            discount = rng.choice((0.1, 0.15, 0.2, 0.25, 0.3, 0.4))
            sale = f"{price * (1 - discount):.2f} USD"
        roll = rng.random()
        availability = (
            "in_stock" if roll < 0.86 else "out_of_stock" if roll < 0.94 else "preorder" if roll < 0.97
            else "backorder"
        )
        region = rng.choice(RETAIL_REGIONS) if rng.random() < 0.3 else ""
        countries = "US,CA" if rng.random() < 0.15 else "US"
        extra_images = ""
        if rng.random() < 0.4:
            extra_images = ",".join(
                f"https://cdn.example.com/images/{product_id.lower()}-{k}.jpg" for k in range(2, 2 + rng.randint(1, 3))
            )
        popularity = rng.lognormvariate(0.0, 0.6)  # a relative sales rank weight, ~1 on average
        description = (
            f"The {adjective.lower()} {noun.lower()} from {brand} in {color.lower()}. "
            f"Free returns within 30 days."
        )
        lines.append("\t".join((
            product_id,
            title,
            description,
            f"https://shop.example.com/{category}/{slug}-{product_id.lower()}",
            f"https://cdn.example.com/images/{product_id.lower()}-1.jpg",
            extra_images,
            availability,
            f"{price:.2f} USD",
            sale,
            brand,
            category,
            region,
            season,
            countries,
            f"{popularity:.2f}",
        )))
    return ("\n".join(lines) + "\n").encode("utf-8")


def generate_feed_file(path: str | Path = "examples/retail/feed.tsv", n: int = 3000, seed: int = 7) -> Path:
    """Write :func:`generate_retail_feed` output to ``path`` and return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(generate_retail_feed(n, seed))
    return target
