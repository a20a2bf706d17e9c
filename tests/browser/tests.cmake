# The web UI (issue 14): its HTTP serving (python, starts the real `ah webui`) and its behaviour
# in a real browser (playwright-core driving Debian's headless Chromium). Screenshots of each
# view are left in ${CMAKE_BINARY_DIR}/browser-artifacts.
add_test(NAME browser/webui-http COMMAND ${PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/browser/test_webui_http.py)
set_tests_properties(browser/webui-http PROPERTIES LABELS "browser;integration" TIMEOUT 300
  ENVIRONMENT "AH_BIN=$<TARGET_FILE:ah>;PYTHONDONTWRITEBYTECODE=1;PYTHONPATH=${CMAKE_CURRENT_SOURCE_DIR}/integration")

add_test(NAME browser/webui-proxy COMMAND ${PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/browser/test_webui_proxy.py)
set_tests_properties(browser/webui-proxy PROPERTIES LABELS "browser;integration" TIMEOUT 300
  ENVIRONMENT "AH_BIN=$<TARGET_FILE:ah>;PYTHONDONTWRITEBYTECODE=1;PYTHONPATH=${CMAKE_CURRENT_SOURCE_DIR}/integration")

find_program(AH_NODE_FOR_TESTS NAMES node nodejs REQUIRED)
add_test(NAME browser/webui COMMAND ${AH_NODE_FOR_TESTS} ${CMAKE_CURRENT_SOURCE_DIR}/browser/webui.mjs)
set_tests_properties(browser/webui PROPERTIES LABELS browser TIMEOUT 600
  ENVIRONMENT "AH_BIN=$<TARGET_FILE:ah>;AH_ARTIFACTS=${CMAKE_BINARY_DIR}/browser-artifacts")

add_test(NAME browser/webui-files COMMAND ${AH_NODE_FOR_TESTS} ${CMAKE_CURRENT_SOURCE_DIR}/browser/files.mjs)
set_tests_properties(browser/webui-files PROPERTIES LABELS browser TIMEOUT 600
  ENVIRONMENT "AH_BIN=$<TARGET_FILE:ah>;AH_ARTIFACTS=${CMAKE_BINARY_DIR}/browser-artifacts")

add_test(NAME browser/webui-proxy-ui COMMAND ${AH_NODE_FOR_TESTS} ${CMAKE_CURRENT_SOURCE_DIR}/browser/proxy.mjs)
set_tests_properties(browser/webui-proxy-ui PROPERTIES LABELS browser TIMEOUT 600
  ENVIRONMENT "AH_BIN=$<TARGET_FILE:ah>;AH_ARTIFACTS=${CMAKE_BINARY_DIR}/browser-artifacts")

add_test(NAME browser/webui-timeline COMMAND ${AH_NODE_FOR_TESTS} ${CMAKE_CURRENT_SOURCE_DIR}/browser/timeline.mjs)
set_tests_properties(browser/webui-timeline PROPERTIES LABELS browser TIMEOUT 600
  ENVIRONMENT "AH_BIN=$<TARGET_FILE:ah>;AH_ARTIFACTS=${CMAKE_BINARY_DIR}/browser-artifacts")

add_test(NAME browser/webui-login COMMAND ${AH_NODE_FOR_TESTS} ${CMAKE_CURRENT_SOURCE_DIR}/browser/login.mjs)
set_tests_properties(browser/webui-login PROPERTIES LABELS browser TIMEOUT 600
  ENVIRONMENT "AH_BIN=$<TARGET_FILE:ah>;AH_ARTIFACTS=${CMAKE_BINARY_DIR}/browser-artifacts")

# Signing in through a real glewlwyd (tests/integration/oidc_harness.py) and signing out.
add_test(NAME browser/webui-oidc COMMAND ${AH_NODE_FOR_TESTS} ${CMAKE_CURRENT_SOURCE_DIR}/browser/oidc.mjs)
set_tests_properties(browser/webui-oidc PROPERTIES LABELS browser TIMEOUT 600
  ENVIRONMENT "AH_BIN=$<TARGET_FILE:ah>;AH_ARTIFACTS=${CMAKE_BINARY_DIR}/browser-artifacts;PYTHONDONTWRITEBYTECODE=1")

# The terminal screen of the session page (web/src/terminal.ts), without a browser.
add_test(NAME browser/terminal COMMAND ${AH_NODE_FOR_TESTS} --test ${CMAKE_CURRENT_SOURCE_DIR}/browser/terminal_test.mjs)
set_tests_properties(browser/terminal PROPERTIES LABELS "browser;unit" TIMEOUT 120)

# The event stream of the UI (web/src/sse.ts): SSE parsing, resume, de-duplication, end.
add_test(NAME browser/sse COMMAND ${AH_NODE_FOR_TESTS} --test ${CMAKE_CURRENT_SOURCE_DIR}/browser/sse_test.mjs)
set_tests_properties(browser/sse PROPERTIES LABELS "browser;unit" TIMEOUT 120)
