"""The parent API's messages (parent.proto) to and from the pure records (abstract, chain)."""
from __future__ import annotations

from quseccontroller.abstract import Border, DomainExport, Reach
from quseccontroller.parent.chain import Chain, ChainRequest, Crossing, Segment
from quseccontroller.proto import parent_pb2 as pb


def reach_pb(r: Reach) -> pb.Reach:
    return pb.Reach(rate_bps=r.rate_bps, stored_bits=r.stored_bits, hops=r.hops)


def reach_of(m: pb.Reach) -> Reach:
    return Reach(rate_bps=m.rate_bps, stored_bits=m.stored_bits, hops=m.hops)


def export_pb(ex: DomainExport) -> pb.DomainExport:
    return pb.DomainExport(
        seq=ex.seq, transit=ex.transit,
        borders=[pb.Border(node=b.node, crossing=b.crossing, kind=b.kind, peer_domain=b.peer_domain,
                           peer_node=b.peer_node, up=b.up) for b in ex.borders],
        links=[pb.BorderPair(a=a, b=b, reach=reach_pb(r)) for (a, b), r in sorted(ex.links.items())],
        saes=[pb.SaeReach(sae=s, from_border={n: reach_pb(r) for n, r in per.items()})
              for s, per in sorted(ex.saes.items())])


def export_of(domain: str, m: pb.DomainExport) -> DomainExport:
    """The export of ``domain`` (the caller's, from its certificate: never from the message)."""
    return DomainExport(
        domain=domain, seq=m.seq, transit=m.transit,
        borders=tuple(Border(b.node, b.crossing, b.kind, b.peer_domain, b.peer_node, b.up) for b in m.borders),
        links={tuple(sorted((p.a, p.b))): reach_of(p.reach) for p in m.links},
        saes={s.sae: {n: reach_of(r) for n, r in s.from_border.items()} for s in m.saes})


def request_pb(req: ChainRequest) -> pb.ChainRequest:
    return pb.ChainRequest(dst_sae=req.dst_sae, need_bits=req.need_bits, allow_pqc=req.allow_pqc,
                           src_reach={n: reach_pb(r) for n, r in req.src_reach.items()},
                           exclude=list(req.exclude))


def request_of(domain: str, m: pb.ChainRequest) -> ChainRequest:
    return ChainRequest(src_domain=domain, dst_sae=m.dst_sae, need_bits=m.need_bits,
                        src_reach={n: reach_of(r) for n, r in m.src_reach.items()},
                        allow_pqc=m.allow_pqc, exclude=tuple(m.exclude))


def chain_pb(c: Chain) -> pb.Chain:
    return pb.Chain(dst_domain=c.dst_domain, security=c.security, cost=c.cost,
                    segments=[pb.Segment(domain=s.domain, entry=s.entry, exit=s.exit) for s in c.segments],
                    crossings=[pb.Crossing(id=x.id, kind=x.kind, from_domain=x.from_domain,
                                           from_node=x.from_node, to_domain=x.to_domain, to_node=x.to_node)
                               for x in c.crossings])


def chain_of(m: pb.Chain) -> Chain:
    return Chain(dst_domain=m.dst_domain, security=m.security, cost=m.cost,
                 segments=tuple(Segment(s.domain, s.entry, s.exit) for s in m.segments),
                 crossings=tuple(Crossing(x.id, x.kind, x.from_domain, x.from_node, x.to_domain, x.to_node)
                                 for x in m.crossings))
