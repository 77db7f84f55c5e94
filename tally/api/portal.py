"""Customer portal links: CreatePortalSession signs a link to one customer's portal, RevokePortalLinks rotates
the tenant's signing key (every earlier link and portal session stops working). The signing and checking are
in `tally.console.portal._links`; docs/portal.md describes the security model."""

from __future__ import annotations

from invoicing.catalog import rotate_portal_secret
from metering.tenant import Principal
from tally.api.base import ADMIN, ApiBase, now, required, rpc, timestamp
from tally.v1 import billing_pb2 as pb


class PortalRpcs(ApiBase):
    @rpc(ADMIN)
    def CreatePortalSession(self, principal: Principal, request: pb.CreatePortalSessionRequest) -> pb.PortalSession:
        from tally.console.portal._links import create_link

        customer = required(request.customer, "customer")
        link = create_link(
            self.engine, principal.tenant_id, customer, now(), ttl_s=request.ttl_seconds, return_url=request.return_url
        )
        return pb.PortalSession(path=link.path, expires_at=timestamp(link.expires_at), customer=link.customer)

    @rpc(ADMIN)
    def RevokePortalLinks(
        self, principal: Principal, request: pb.RevokePortalLinksRequest
    ) -> pb.RevokePortalLinksResponse:
        key = rotate_portal_secret(self.engine, principal.tenant_id, now())
        return pb.RevokePortalLinksResponse(key_version=key.version, rotated_at=timestamp(key.rotated_at))


__all__ = ["PortalRpcs"]
