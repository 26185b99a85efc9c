//! The node's tests: the host's controls (`access`), failed presence exits retried
//! (`presence`) and server-side sends (`sends`).

mod access;
mod limits;
mod overflow;
mod presence;
mod sends;
