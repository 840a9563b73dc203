"""Running the service: the embedded local store and the sweeper of abandoned uploads."""
