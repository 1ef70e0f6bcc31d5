"""TripSage Sync: sync package."""
