"""TripSage Sync: api package."""
