"""HTTP protocol pieces that know nothing of jobs: problem+json, paging, byte ranges, multipart
uploads, body limits, HEAD and security headers."""
