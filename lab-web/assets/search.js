// transcript search page (filled in by the front-end work)
