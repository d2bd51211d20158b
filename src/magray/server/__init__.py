"""``magray serve``: the gRPC server.

- :mod:`magray.server.main`: the server, health, reflection, metrics, graceful shutdown
- :mod:`magray.server.service`: each RPC as one call of the namespace's Memory
- :mod:`magray.server.tenants`: namespace -> store, a bounded open set
- :mod:`magray.server.auth`: bearer tokens -> namespaces and rights
- :mod:`magray.server.batching`: shared embedding batches across requests
"""
