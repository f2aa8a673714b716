"""Class names of the label sets, as data: what each model id means, in the order of the ids.

One table, ``CLASS_NAMES``, keyed like ``spade_rt.palettes.PALETTES``: a preset's ``palette`` names its label
set, i.e. both its colours and its names (``Preset.class_names()``), so the two never disagree. torch-free.

- coco: the 182 COCO-Stuff labels (cocostuff labels.txt minus its "unlabeled" line: stored id = label - 1),
  91 things (11 of them never annotated: street sign, hat, shoe, eye glasses, plate, mirror, window, desk,
  door, blender, hair brush) then 91 stuff classes; id 182 is dontcare (stored 255);
- ade20k: id 0 "other" then the 150 classes of objectInfo150 (first synonym), ids as stored;
- cityscapes: labelIds 0..33 of the official label table, then 34, SPADE's extra entry (license plate);
- landscape: the demo's 10 classes (``spade_rt.procedural.LANDSCAPE_NAMES``).
"""

from __future__ import annotations

from spade_rt.procedural import LANDSCAPE_NAMES

# fmt: off
COCO_STUFF_NAMES = (  # ids 0..181
    # things 0..90
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "street sign", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep",
    "cow", "elephant", "bear", "zebra", "giraffe", "hat", "backpack", "umbrella", "shoe", "eye glasses",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat",
    "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "plate", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza",
    "donut", "cake", "chair", "couch", "potted plant", "bed", "mirror", "dining table", "window", "desk",
    "toilet", "door", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven",
    "toaster", "sink", "refrigerator", "blender", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush", "hair brush",
    # stuff 91..181
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage", "cardboard", "carpet",
    "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain",
    "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile",
    "floor-wood", "flower", "fog", "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other",
    "hill", "house", "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin",
    "net", "paper", "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield", "railing",
    "railroad", "river", "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf", "sky-other",
    "skyscraper", "snow", "solid-other", "stairs", "stone", "straw", "structural-other", "table", "tent",
    "textile-other", "towel", "tree", "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel",
    "wall-stone", "wall-tile", "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
)
ADE20K_NAMES = (  # ids 1..150 (objectInfo150.txt order)
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)
CITYSCAPES_NAMES = (  # labelIds 0..34
    "unlabeled", "ego vehicle", "rectification border", "out of roi", "static", "dynamic", "ground", "road",
    "sidewalk", "parking", "rail track", "building", "wall", "fence", "guard rail", "bridge", "tunnel", "pole",
    "polegroup", "traffic light", "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
    "truck", "bus", "caravan", "trailer", "train", "motorcycle", "bicycle", "license plate",
)
# fmt: on
DONTCARE_NAME = "unlabeled (dontcare)"

# label set -> the name of each id, indexed by model id (the same keys as spade_rt.palettes.PALETTES)
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "coco": (*COCO_STUFF_NAMES, DONTCARE_NAME),
    "ade20k": ("other", *ADE20K_NAMES),
    "cityscapes": CITYSCAPES_NAMES,
    "landscape": LANDSCAPE_NAMES,
}


def id_names(label_set: str | None, num_ids: int) -> list[str]:
    """The name of each of ``num_ids`` ids: the label set's where it has one, else ``class I``."""
    names = CLASS_NAMES.get(label_set or "", ())
    return [names[i] if i < len(names) else f"class {i}" for i in range(num_ids)]
