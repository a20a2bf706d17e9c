# tests/contract — the OpenAPI contract (issue 6). Included from tests/CMakeLists.txt.
#   contract/openapi-lint   Redocly CLI (pinned in package-lock.json) on api/openapi.json, with
#                           the recommended-strict rules: a warning fails too
#   contract/docs-ui        /api/docs in headless Chromium lists every documented operation
#   contract/selftest       the contract check catches wrong shapes and undocumented answers
#   contract/unimplemented  openapi.c's routes, driven without a socket
# The check itself runs inside every integration test (tests/integration/contract.py).

find_program(NODE_EXECUTABLE NAMES node nodejs)
if(NOT NODE_EXECUTABLE)
  message(FATAL_ERROR "node is missing: run scripts/deps.sh")
endif()
set(AH_REDOCLY ${CMAKE_SOURCE_DIR}/node_modules/.bin/redocly)
if(NOT EXISTS ${AH_REDOCLY})
  message(FATAL_ERROR "node_modules/.bin/redocly is missing: run scripts/deps.sh")
endif()

# Telemetry and update checks off: the linter must not reach for the network.
add_test(NAME contract/openapi-lint
         COMMAND ${AH_REDOCLY} lint api/openapi.json --extends recommended-strict
                 --format stylish
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(contract/openapi-lint PROPERTIES LABELS contract TIMEOUT 120
  ENVIRONMENT "REDOCLY_TELEMETRY=off;REDOCLY_SUPPRESS_UPDATE_NOTICE=true;NO_COLOR=1")

add_test(NAME contract/docs-ui
         COMMAND ${NODE_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/contract/docs_ui.mjs)
set_tests_properties(contract/docs-ui PROPERTIES LABELS contract TIMEOUT 300
  ENVIRONMENT "AH_BIN=$<TARGET_FILE:ah>")

add_test(NAME contract/selftest
         COMMAND ${PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/contract/selftest.py)
set(ah_contract_py_env AH_BIN=$<TARGET_FILE:ah> PYTHONDONTWRITEBYTECODE=1
    PYTHONPATH=${CMAKE_CURRENT_SOURCE_DIR}/integration)
set_tests_properties(contract/selftest PROPERTIES LABELS contract TIMEOUT 300
  ENVIRONMENT "${ah_contract_py_env}")

# openapi.c at the router level (no socket): served document and docs, 501 for the rest.
add_executable(test-contract-unimplemented contract/test-unimplemented.c)
target_link_libraries(test-contract-unimplemented PRIVATE ah_api PkgConfig::CMOCKA)
add_test(NAME contract/unimplemented COMMAND test-contract-unimplemented)
set_tests_properties(contract/unimplemented PROPERTIES LABELS contract TIMEOUT 120)

# The document is honest (issue 10, item 20): x-ah-implemented marks match the real server's
# 501s, and no authentication or rate limit is advertised that the server does not enforce.
add_test(NAME contract/honest
         COMMAND ${PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/contract/honest.py)
set_tests_properties(contract/honest PROPERTIES LABELS contract TIMEOUT 300
  ENVIRONMENT "${ah_contract_py_env}")

# User docs and the served API description stand alone (issue 10, item 21): no decision
# numbers or spec files from outside the repository.
add_test(NAME contract/standalone-docs
         COMMAND ${PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/contract/standalone_docs.py)
set_tests_properties(contract/standalone-docs PROPERTIES LABELS contract TIMEOUT 60)
