//! The buffer pool: a fixed-budget cache of value-file blocks, keyed by (value file, logical
//! block) like the kernel's page cache is keyed by (mapping, index).
