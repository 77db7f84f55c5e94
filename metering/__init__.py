"""Events in: the ingest gRPC servicer, validation, durable de-duplicated storage, tenants and meters."""
