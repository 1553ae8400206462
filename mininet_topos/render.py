"""A topology file as an SVG picture (pure: a Topology in, SVG text out) for docs and papers.

Nodes sit at their ``location`` when every node has one (else the dashboard's stable layout,
``quseccontroller.dashboard.layout``), QKD links are drawn with their secret key rate (line width
on a log scale, the rate as a label), end nodes are squares, the trust level is the ring width,
domains are shaded boxes with their id, interworking sites dotted and post-quantum links dashed.
The same file always gives the same picture (``qkdnet topo show FILE --svg OUT``).
"""
from __future__ import annotations

import math
from xml.sax.saxutils import escape

from quseccontroller.dashboard.layout import BOX, layout
from mininet_topos.model import Topology

LABEL_LINKS_UP_TO = 60        # more links: no rate labels (they would cover the picture)
DOMAIN_COLOURS = ("#e7f5ff", "#fff4e6", "#ebfbee", "#f3f0ff", "#fff0f6", "#e6fcf5")
DOMAIN_STROKES = ("#74c0fc", "#ffa94d", "#69db7c", "#b197fc", "#f783ac", "#38d9a9")
HEADER = 50.0
FOOTER = 30.0


def rate_text(bps: float) -> str:
    for unit, scale in (("Mb/s", 1e6), ("kb/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.3g} b/s"


def _width(bps: float) -> float:
    """1.5 px at 1 kb/s and below, about 6 px at 10 Mb/s."""
    return round(1.5 + 1.1 * max(0.0, math.log10(max(bps, 1.0)) - 3.0), 2)


def _layout_note(topo: Topology, kind: str) -> str:
    if kind == "location":
        return "at their locations"
    if all(n.location is not None for n in topo.nodes.values()):
        return "stable layout (the locations would stack nodes)"
    return "stable layout (no locations)"


def render_svg(topo: Topology) -> str:
    """The topology as a standalone SVG document."""
    edges = [(lk.a, lk.b) for lk in topo.links] + [(p.a, p.b) for p in topo.pqc_links]
    for site in topo.interworking:
        edges += [(x, y) for i, x in enumerate(site.kmes) for y in site.kmes[i + 1:]]
    kind, pos = layout(topo.nodes, edges, {n.id: n.location for n in topo.nodes.values()})
    pos = {n: (x, y + HEADER) for n, (x, y) in pos.items()}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {BOX:g} {BOX + HEADER + FOOTER:g}" '
           f'width="{BOX:g}" height="{BOX + HEADER + FOOTER:g}" font-family="sans-serif">',
           '<rect width="100%" height="100%" fill="#ffffff"/>',
           f'<text x="20" y="32" font-size="22" font-weight="bold">{escape(topo.name)}</text>',
           f'<text x="{BOX - 20:g}" y="32" font-size="13" text-anchor="end" fill="#495057">'
           f'{len(topo.nodes)} nodes, {len(topo.links)} QKD links; '
           f'{_layout_note(topo, kind)}</text>']
    for i, (dom, d) in enumerate(sorted(topo.domains.items())):
        members = [pos[n.id] for n in topo.nodes.values() if n.domain == dom]
        if not members:
            continue
        xs, ys = [p[0] for p in members], [p[1] for p in members]
        x0, y0, x1, y1 = min(xs) - 36, min(ys) - 44, max(xs) + 36, max(ys) + 36
        out.append(f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" rx="14" '
                   f'fill="{DOMAIN_COLOURS[i % len(DOMAIN_COLOURS)]}" '
                   f'stroke="{DOMAIN_STROKES[i % len(DOMAIN_STROKES)]}" stroke-width="1.5"/>')
        out.append(f'<text x="{x0 + 8:.1f}" y="{y1 - 8:.1f}" font-size="13" fill="#495057">'
                   f'domain {escape(dom)}</text>')
    labels = len(topo.links) <= LABEL_LINKS_UP_TO
    seen: dict[tuple[str, str], int] = {}
    for lk in topo.links:
        (xa, ya), (xb, yb) = pos[lk.a], pos[lk.b]
        pair = tuple(sorted((lk.a, lk.b)))
        k = seen[pair] = seen.get(pair, -1) + 1          # parallel links side by side
        dx, dy = yb - ya, xa - xb
        norm = math.hypot(dx, dy) or 1.0
        off = 7.0 * k
        ox, oy = dx / norm * off, dy / norm * off
        out.append(f'<line x1="{xa + ox:.1f}" y1="{ya + oy:.1f}" x2="{xb + ox:.1f}" y2="{yb + oy:.1f}" '
                   f'stroke="#2f9e44" stroke-width="{_width(lk.rate_bps)}" stroke-linecap="round">'
                   f'<title>{escape(lk.id)}: {rate_text(lk.rate_bps)}'
                   + (f', {lk.length_km:g} km' if lk.length_km is not None else '') + '</title></line>')
        if labels:
            km = f" · {lk.length_km:g} km" if lk.length_km is not None else ""
            out.append(f'<text x="{(xa + xb) / 2 + ox:.1f}" y="{(ya + yb) / 2 + oy - 5:.1f}" font-size="11" '
                       f'text-anchor="middle" fill="#495057" stroke="#fff" stroke-width="3" '
                       f'paint-order="stroke">{rate_text(lk.rate_bps)}{km}</text>')
    for p in topo.pqc_links:
        (xa, ya), (xb, yb) = pos[p.a], pos[p.b]
        out.append(f'<line x1="{xa:.1f}" y1="{ya:.1f}" x2="{xb:.1f}" y2="{yb:.1f}" stroke="#ae3ec9" '
                   f'stroke-width="2" stroke-dasharray="10 6"><title>{escape(p.id)}: post-quantum '
                   f'link (no QKD key)</title></line>')
        out.append(f'<text x="{(xa + xb) / 2:.1f}" y="{(ya + yb) / 2 - 5:.1f}" font-size="11" '
                   f'text-anchor="middle" fill="#ae3ec9">PQC {escape(p.id)}</text>')
    for site in topo.interworking:
        for i, x in enumerate(site.kmes):
            for y in site.kmes[i + 1:]:
                (xa, ya), (xb, yb) = pos[x], pos[y]
                out.append(f'<line x1="{xa:.1f}" y1="{ya:.1f}" x2="{xb:.1f}" y2="{yb:.1f}" '
                           f'stroke="#1c7ed6" stroke-width="3" stroke-dasharray="2 5">'
                           f'<title>interworking site {escape(site.id)} (ETSI GS QKD 020)</title></line>')
    for n in sorted(topo.nodes.values(), key=lambda n: n.id):
        x, y = pos[n.id]
        ring = 1 + n.trust
        title = f'{escape(n.id)}: trust {n.trust}, {n.role}' + (f', domain {escape(n.domain)}' if n.domain else '')
        saes = ", ".join(s.id for s in topo.saes_of(n.id))
        if saes:
            title += f'; SAEs {escape(saes)}'
        shape = (f'<rect x="{x - 13:.1f}" y="{y - 13:.1f}" width="26" height="26" rx="4"'
                 if n.role == "end" else f'<circle cx="{x:.1f}" cy="{y:.1f}" r="14"')
        out.append(f'{shape} fill="#d0ebff" stroke="#1864ab" stroke-width="{ring}"><title>{title}</title>'
                   + ('</rect>' if n.role == "end" else '</circle>'))
        out.append(f'<text x="{x:.1f}" y="{y - 21:.1f}" font-size="14" font-weight="bold" '
                   f'text-anchor="middle" stroke="#fff" stroke-width="3" paint-order="stroke">'
                   f'{escape(n.id)}</text>')
    out.append(f'<text x="20" y="{BOX + HEADER + FOOTER - 12:g}" font-size="12" fill="#495057">line width and '
               f'label: secret key rate · ring width: trust level 1..5 · square: end node'
               + (' · dotted: interworking site' if topo.interworking else '')
               + (' · dashed: post-quantum link' if topo.pqc_links else '') + '</text>')
    out.append('</svg>')
    return "\n".join(out) + "\n"
