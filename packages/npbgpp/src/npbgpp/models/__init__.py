"""NPBG++ and NPBG networks and the geometry around them, one module per part: projection
(NPBG++'s NDC and z-buffer visibility), unet (feature extractor), view_processing (alignment,
crops, feature sampling), aggregation (sphere / mean aggregators), rasterizer, refiner,
rgb_converter, and factory (the builders named in the configs)."""
