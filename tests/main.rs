//! Integration tests: one binary, a module per capability. Every test talks to real
//! PostgreSQL (and MariaDB) servers from `EBIS_TEST_PG_URL` / `EBIS_TEST_MYSQL_URL`
//! (defaults: the local servers), each in its own throwaway databases.

mod support;

mod analyst;
mod base;
mod bench;
mod binlog;
mod capture;
mod check;
mod compare;
mod contract;
mod demo;
mod expiry;
mod faults;
mod findings;
mod gaps;
mod hostile;
mod keys;
mod linking;
mod migrate;
mod operations;
mod postgres_source;
mod purge;
mod roles;
mod schema_changes;
mod snapshot;
mod timestamp;
mod tls;
