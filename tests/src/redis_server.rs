//! redis-server processes (later)
