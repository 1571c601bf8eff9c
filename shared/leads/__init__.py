"""Leads: from a HubSpot delivery to a workflow that ends SENT, DRAFT_SAVED, BLOCKED, FAILED or REPLIED."""
