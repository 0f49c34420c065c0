//! Multi-process end-to-end tests: real `causeway` processes, each cluster in its own
//! network namespace, with partitions (`nft` drop rules) and kills (`kill -9`).
//! Support code for those tests lives here; the tests live in `tests/`.
