"""First-boot enrolment of a station, and the county-side registrar."""
