"""Learning: features, critics, batched search and the learner that ties them."""
