"""The team hub: one MLflow tracking server (PostgreSQL + S3) that every member's miniml points at."""

from miniml.hub.config import HubConfig, load_hub_config
from miniml.hub.server import HubState, down, status, up

__all__ = ["HubConfig", "HubState", "down", "load_hub_config", "status", "up"]
