"""The memory engine: three layers on RocksDB and hnswlib."""
