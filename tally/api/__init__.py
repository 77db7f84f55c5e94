"""The BillingService gRPC API: one mixin per domain, composed in `tally.api.service`."""
