//! The release manifest: what a signed Keel release contains and the PCR values a node booting it will measure.
