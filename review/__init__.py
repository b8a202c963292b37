"""The review desk: people label patch videos in the browser for the relabel loop, and vet the service's live alerts."""
