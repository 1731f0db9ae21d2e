//! Real services on loopback for tests (swtpm, pebble, Ceph, a Git server, PostgreSQL), started and stopped by PID.
