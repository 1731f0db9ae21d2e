//! keel-enroll: the central enrollment service.
