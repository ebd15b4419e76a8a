"""The published numbers that notebook 30 sets beside ours, as data (recall in percent).

Every value is a copy of a row of `docs/paper_numbers.md`, which says where it comes from: "S" the SpeechCLIP poster
(test set), "V" the dev score in a released checkpoint's file name, "R" recalled from the SpeechCLIP paper and
unconfirmed. They are context, never thresholds: our corpus is synthetic and our backbones are pocket-size.
"""

# Flickr8k test, 1,000 images / 5,000 utterances (R): speech→image R@1/5/10, then image→speech R@1/5/10.
FLICKR8K_TEST_IMAGES = 1000
FLICKR8K_RETRIEVAL = {
    "Parallel Base": [26.7, 57.1, 70.0, 41.3, 73.9, 84.2],
    "Cascaded Base": [8.2, 25.7, 37.2, 14.1, 34.9, 49.2],
    "Parallel Large": [39.1, 72.0, 83.0, 54.5, 84.5, 93.2],
    "Cascaded Large": [14.7, 41.2, 55.1, 21.8, 52.0, 67.7],
}

# SpokenCOCO test, 5,000 images / 25,000 utterances (S), same column order.
SPOKENCOCO_RETRIEVAL = {
    "Parallel Large": [35.8, 66.5, 78.0, 50.6, 80.9, 89.1],
    "Cascaded Large": [6.4, 20.7, 31.0, 9.6, 27.7, 39.7],
}

# Zero-shot speech→text R@1/5/10, then text→speech R@1/5/10; SpokenCOCO, Parallel Large (S).
ZERO_SHOT = {
    "random ranking": [0.02, 0.10, 0.20, 0.02, 0.10, 0.20],
    "Parallel Large, zero-shot": [60.32, 81.81, 88.18, 65.45, 85.82, 91.27],
    "Parallel Large, supervised with text (topline)": [95.02, 99.46, 99.78, 95.35, 99.68, 99.93],
}

# Cascaded keyword hit rate per slot 1..8, top-5 nearest subwords (S); the mean is the paper's own column.
KEYWORD_HITS = {
    "Cascaded Base (Flickr8k)": [57.0, 25.6, 20.2, 5.0, 20.0, 26.5, 10.5, 16.6],
    "Cascaded Large (Flickr8k)": [56.5, 19.6, 20.5, 37.5, 21.7, 34.6, 26.4, 44.7],
    "Cascaded Large (SpokenCOCO)": [27.5, 22.4, 35.8, 61.0, 21.6, 54.2, 60.1, 22.9],
}
KEYWORD_HITS_MEAN = {"Cascaded Base (Flickr8k)": 22.7, "Cascaded Large (Flickr8k)": 32.7,
                     "Cascaded Large (SpokenCOCO)": 38.2}

# Flickr8k dev mean R@10 of the released checkpoints (V): fixed-K cascaded, Cascaded+ (CIF), hybrid.
FLICKR8K_DEV_MEAN_R10 = {
    "Cascaded Large": 62.77,
    "Parallel Large": 89.00,
    "Cascaded+ Base": 42.11,
    "Cascaded+ Large": 60.05,
    "Hybrid Base": 80.01,
    "Hybrid+ Base": 81.03,
    "Hybrid Large": 90.10,
    "Hybrid+ Large": 89.35,
}

# What SpeechCLIP+ states in its abstract (its tables were not available to us), in our words.
PLUS_CLAIMS = {
    "cif_keywords": "CIF keyword segmentation (Cascaded+) extracts keywords better than the fixed-K cascaded model",
    "hybrid_retrieval": "adding the cascaded objective (hybrid) improves the parallel branch's speech-image retrieval",
}
