"""The parent controller: one level above the domains' QuSeCs, choosing domain chains from what they export."""
