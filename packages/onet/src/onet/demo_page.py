"""The HTML page of ``python -m onet.demo``: per image, the input, the predicted mesh and the
ground truth side by side, and a table of ONet's metrics for the objects that have them.

One self-contained file (plotly.js inlined once, input images as data URIs): it opens offline.
The two 3-D views of an object share one camera (rotate either, the other follows), start from
the input image's viewpoint when it is known, and use one scale, so sizes compare directly.
Meshes are shaded smoothly: plotly averages the faces' normals at each shared vertex (its
``flatshading=False``), so the decimated meshes' long thin triangles do not show as facets.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from geomkit.structures import TriMesh
from geomkit.viz import mesh_trace

PREDICTION_COLOR = "#4c78a8"
TRUTH_COLOR = "#8c8c8c"
# Soft light, little gloss: the shape reads from the diffuse term, no specular speckle.
LIGHTING = {
    "ambient": 0.35,
    "diffuse": 0.85,
    "specular": 0.12,
    "roughness": 0.7,
    "fresnel": 0.05,
}
LIGHT_POSITION = {"x": 1e5, "y": 1e5, "z": 1e5}
# Camera used when the input's viewpoint is unknown: azimuth 45, elevation 27 degrees, +y up.
DEFAULT_EYE = (1.26, 0.91, 1.26)
UP = {"x": 0.0, "y": 1.0, "z": 0.0}
SCENE_HALF_WIDTH = 0.55  # ONet's points box: the unit cube plus 0.05 per side

# Shown metrics: (key of MeshEvaluator, column title, scale factor).
METRIC_COLUMNS = (
    ("iou", "IoU", 1.0),
    ("chamfer-L1", "Chamfer-L1", 1.0),
    ("chamfer-L1", "Chamfer-L1 x10", 10.0),
    ("normals", "normal consistency", 1.0),
)
DIGITS = 4


@dataclass
class Truth:
    """The ground truth of one image as the page shows it.

    shape: a TriMesh, or (N, 3) points; in ONet's normalised frame like the prediction.
    shown_as: what ``shape`` is, in words ("watertight mesh model_watertight.off").
    source: where it came from (folder or file), for the page.
    label: the object's name on the page (class and model when known).
    """

    shape: TriMesh | np.ndarray
    shown_as: str
    source: str
    label: str


@dataclass
class Row:
    """One image: name (file stem), input image, predicted mesh, seconds it took; the truth and
    MeshEvaluator's metrics when known; eye: the plotly camera eye (x, y, z) or None."""

    name: str
    image: Image.Image
    mesh: TriMesh
    seconds: float
    truth: Truth | None = None
    metrics: dict[str, float] | None = None
    eye: tuple[float, float, float] | None = None
    notes: list[str] = field(default_factory=list)


def format_metric(value: float | None, scale: float = 1.0) -> str:
    """A metric as the page prints it (DIGITS decimals; '-' when missing or NaN)."""
    if value is None or math.isnan(value):
        return "-"
    return f"{scale * value:.{DIGITS}f}"


def image_data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def smooth_mesh_trace(mesh: TriMesh, name: str, color: str) -> go.Mesh3d:
    """A smoothly shaded Mesh3d (per-vertex normals averaged by plotly over the shared
    vertices)."""
    style = {"lighting": LIGHTING, "lightposition": LIGHT_POSITION, "hoverinfo": "skip"}
    return mesh_trace(name, mesh, color, flatshading=False, showscale=False, **style)


def points_trace(points: np.ndarray, name: str, color: str) -> go.Scatter3d:
    return go.Scatter3d(
        x=points[:, 0],
        y=points[:, 1],
        z=points[:, 2],
        mode="markers",
        name=name,
        marker={"size": 1.8, "color": color},
        hoverinfo="skip",
    )


def half_width(shapes: Sequence[TriMesh | np.ndarray]) -> float:
    """Half the edge of the cube that holds every shape and ONet's points box."""
    extent = SCENE_HALF_WIDTH
    for shape in shapes:
        points = shape.vertices if isinstance(shape, TriMesh) else np.asarray(shape)
        if len(points):
            extent = max(extent, float(np.abs(points).max()) * 1.02)
    return extent


def scene_layout(eye, extent: float) -> dict:
    axis = {
        "range": [-extent, extent],
        "showbackground": False,
        "gridcolor": "#e6e6e6",
        "zerolinecolor": "#d0d0d0",
        "tickfont": {"size": 9, "color": "#999"},
        "title": {"font": {"size": 10, "color": "#999"}},
    }
    x, y, z = eye or DEFAULT_EYE
    return {
        "xaxis": axis,
        "yaxis": axis,
        "zaxis": axis,
        "aspectmode": "cube",
        "camera": {"eye": {"x": x, "y": y, "z": z}, "up": UP},
    }


def object_figure(row: Row) -> go.Figure:
    """Prediction (left) and ground truth (right, when known) in two scenes."""
    panels = [(smooth_mesh_trace(row.mesh, "prediction", PREDICTION_COLOR), "prediction")]
    if row.truth is not None:
        shape = row.truth.shape
        if isinstance(shape, TriMesh):
            trace = smooth_mesh_trace(shape, "ground truth", TRUTH_COLOR)
        else:
            trace = points_trace(np.asarray(shape), "ground truth", TRUTH_COLOR)
        panels.append((trace, f"ground truth: {row.truth.shown_as}"))
    titles = [f"prediction: {len(row.mesh.faces)} faces"] + [t for _, t in panels[1:]]
    figure = make_subplots(
        rows=1,
        cols=len(panels),
        specs=[[{"type": "scene"}] * len(panels)],
        subplot_titles=titles,
        horizontal_spacing=0.02,
    )
    for col, (trace, _) in enumerate(panels, start=1):
        figure.add_trace(trace, row=1, col=col)
    extent = half_width([row.mesh] + ([row.truth.shape] if row.truth is not None else []))
    scenes = {
        ("scene" if k == 0 else f"scene{k + 1}"): scene_layout(row.eye, extent)
        for k in range(len(panels))
    }
    figure.update_layout(
        width=420 * len(panels),
        height=450,
        showlegend=False,
        margin={"l": 0, "r": 0, "t": 64, "b": 0},
        paper_bgcolor="white",
        **scenes,
    )
    figure.update_annotations(font={"size": 13})
    return figure


# Rotating one scene moves the other (both while dragging and at the end of a drag).
_LINK_CAMERAS = """<script>(function () {
  var gd = document.getElementById(%s), busy = false;
  function follow(event) {
    if (busy) return;
    var update = {};
    if (event['scene.camera']) update['scene2.camera'] = event['scene.camera'];
    else if (event['scene2.camera']) update['scene.camera'] = event['scene2.camera'];
    else return;
    busy = true;
    Plotly.relayout(gd, update).then(function () { busy = false; }, function () { busy = false; });
  }
  gd.on('plotly_relayouting', follow);
  gd.on('plotly_relayout', follow);
})();</script>"""

_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 24px 32px;
       color: #222; max-width: 1400px; }
h1 { font-size: 26px; margin-bottom: 4px; }
h2 { font-size: 19px; margin: 28px 0 6px; }
p.lead, p.note { color: #555; margin: 4px 0; max-width: 1100px; line-height: 1.4; }
table.metrics { border-collapse: collapse; margin: 10px 0 6px; font-size: 14px; }
table.metrics th, table.metrics td { border-bottom: 1px solid #ddd; padding: 5px 12px; }
table.metrics th { background: #f4f4f4; text-align: center; }
table.metrics td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.metrics tr.mean td { border-top: 2px solid #bbb; font-weight: 600; }
.object { border: 1px solid #ddd; border-radius: 6px; padding: 10px 16px 14px;
          margin: 18px 0; }
.object h2 { margin-top: 4px; }
.object .scores { color: #333; font-size: 14px; margin: 2px 0 8px; }
.row { display: flex; align-items: flex-start; gap: 16px; }
figure.input { margin: 0; text-align: center; font-size: 13px; }
figure.input img { width: 224px; height: 224px; border: 1px solid #ccc;
                   margin-top: 64px; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px;
          vertical-align: -1px; margin: 0 3px 0 8px; }
"""


def metrics_table(rows: Sequence[Row]) -> str:
    """The table of the rows that have metrics, and their mean when there are several."""
    scored = [r for r in rows if r.metrics is not None]
    if not scored:
        return ""
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title, _ in METRIC_COLUMNS)
    lines = [
        f"<table class='metrics'><tr><th>object</th>{head}<th>faces</th><th>time [s]</th></tr>"
    ]
    for row in scored:
        cells = "".join(
            f"<td class='num' data-metric='{html.escape(title)}'>"
            f"{format_metric(row.metrics.get(key), scale)}</td>"
            for key, title, scale in METRIC_COLUMNS
        )
        name = html.escape(row.name)
        lines.append(
            f"<tr data-object='{name}'><td><a href='#object-{name}'>"
            f"{html.escape(row.truth.label)}</a></td>{cells}"
            f"<td class='num'>{len(row.mesh.faces)}</td><td class='num'>{row.seconds:.1f}</td></tr>"
        )
    if len(scored) > 1:
        means = "".join(
            f"<td class='num'>{format_metric(_mean([r.metrics.get(key) for r in scored]), s)}</td>"
            for key, _, s in METRIC_COLUMNS
        )
        lines.append(
            f"<tr class='mean'><td>mean of these {len(scored)}</td>{means}<td></td><td></td></tr>"
        )
    lines.append("</table>")
    return "\n".join(lines)


def _mean(values: Sequence[float | None]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


METRICS_EXPLAINED = (
    "Scored as onet.eval_meshes scores the test split (ONet's protocol, "
    "onet.evaluation.MeshEvaluator) on the object's own files, in ONet's normalised frame "
    "(the source mesh's bounding box centred, its longest side 1). "
    "<b>IoU</b>: volumetric intersection over union of the predicted mesh's inside and the "
    "ground-truth occupancy, on the points of points.npz; 1 is perfect. "
    "<b>Chamfer-L1</b>: the mean of accuracy (prediction to truth) and completeness (truth to "
    "prediction), each the mean Euclidean distance from 100,000 samples of the predicted surface "
    "to the points of pointcloud.npz or back, in units of the normalised frame (1 = the longest "
    "side of the object's box); <b>x10</b> is the unit the ONet paper prints; 0 is perfect. "
    "<b>Normal consistency</b>: mean |cos| between matched surface normals, 1 is perfect. "
    "The same numbers at full precision are in metrics.csv."
)


def object_section(row: Row, k: int) -> str:
    figure = object_figure(row)
    div_id = f"mesh{k}"
    div = figure.to_html(
        full_html=False,
        include_plotlyjs=(k == 0),
        div_id=div_id,
        config={"displaylogo": False, "responsive": False},
    )
    title = row.truth.label if row.truth is not None else row.name
    parts = [f"<section class='object' id='object-{html.escape(row.name)}'>"]
    parts.append(f"<h2>{html.escape(title)}</h2>")
    if row.metrics is not None:
        scores = ", ".join(
            f"{title} {format_metric(row.metrics.get(key), scale)}"
            for key, title, scale in METRIC_COLUMNS
        )
        parts.append(f"<p class='scores'>{html.escape(scores)}</p>")
    legend = f"<span class='swatch' style='background:{PREDICTION_COLOR}'></span>prediction" + (
        f"<span class='swatch' style='background:{TRUTH_COLOR}'></span>ground truth "
        f"({html.escape(row.truth.shown_as)}, from {html.escape(row.truth.source)})"
        if row.truth is not None
        else " (no ground truth given for this image)"
    )
    parts.append(f"<p class='note'>{legend}</p>")
    for note in row.notes:
        parts.append(f"<p class='note'>{html.escape(note)}</p>")
    parts.append(
        "<div class='row'><figure class='input'>"
        f"<img src='{image_data_uri(row.image)}' alt={json.dumps(row.name)}>"
        f"<figcaption>input: {html.escape(row.name)}</figcaption></figure>{div}</div>"
    )
    if row.truth is not None:
        parts.append(_LINK_CAMERAS % json.dumps(div_id))
    parts.append("</section>")
    return "\n".join(parts)


def render_page(rows: Sequence[Row], settings: Sequence[tuple[str, str]]) -> str:
    """The page as a string. settings: (name, value) pairs shown under the title."""
    described = "; ".join(f"{html.escape(k)}: {html.escape(v)}" for k, v in settings)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>ONet demo: single-image reconstruction</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Occupancy Networks: single-image reconstruction</h1>",
        f"<p class='lead'>{described}</p>",
        "<p class='lead'>Each object: the input image, the predicted mesh and, where the image "
        "comes with one, the ground truth, seen from the input's viewpoint when it is known. "
        "Drag to rotate (the two views turn together), scroll to zoom, double-click to reset. "
        "Meshes: meshes/&lt;name&gt;.obj and .ply beside this page.</p>",
    ]
    table = metrics_table(rows)
    if table:
        parts += ["<h2>Metrics against the ground truth</h2>", table]
        parts.append(f"<p class='note'>{METRICS_EXPLAINED}</p>")
    for k, row in enumerate(rows):
        parts.append(object_section(row, k))
    parts.append("</body></html>")
    return "\n".join(parts)
