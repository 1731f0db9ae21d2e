//! keel-bootstrap: the first-boot agent of a Keel store node.
