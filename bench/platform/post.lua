-- wrk script: POST a small JSON body to a deployment's invoke route.
wrk.method = "POST"
wrk.body = '{"n":1}'
wrk.headers["Content-Type"] = "application/json"
