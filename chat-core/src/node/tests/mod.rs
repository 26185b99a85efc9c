//! The node's tests: the host's controls (`access`) and server-side sends (`sends`).

mod access;
mod overflow;
mod sends;
