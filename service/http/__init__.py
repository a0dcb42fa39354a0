"""HTTP protocol pieces that know nothing of jobs: problem+json, paging, byte ranges, event
streams, multipart uploads, body limits, HEAD and security headers."""
