# libah-client tests (LABELS client); included from tests/CMakeLists.txt.
#   unit:        pure parts (SSE parser, retry policy, Problem parsing, JSON types, clocks)
#   http:        the client against tiny fake HTTP servers (retries, Retry-After, timeouts,
#                SSE reconnect, connection reuse) and a self-signed TLS server
#   contract:    one task-manager suite run unchanged on every implementation (mock, remote)
#   install:     cmake --install + pkg-config + cc on examples/list-sessions.c
set(AH_CLIENT_TEST_DIR ${CMAKE_CURRENT_SOURCE_DIR}/client)

function(ah_client_test name)
  add_executable(test-client-${name} ${AH_CLIENT_TEST_DIR}/test-${name}.c ${ARGN})
  target_link_libraries(test-client-${name} PRIVATE ah_client_static PkgConfig::CMOCKA)
  add_test(NAME client/${name} COMMAND test-client-${name})
  set_tests_properties(client/${name} PROPERTIES LABELS client TIMEOUT 300)
endfunction()

ah_client_test(sse)
ah_client_test(retry)
ah_client_test(problem)
ah_client_test(types)
ah_client_test(clock)
ah_client_test(http ${AH_CLIENT_TEST_DIR}/fakesrv.c)
# Another server's dialect (the upstream mock): the library and the ah CLI's exit codes.
ah_client_test(foreign ${AH_CLIENT_TEST_DIR}/fakesrv.c)
target_compile_definitions(test-client-foreign PRIVATE AH_BIN="$<TARGET_FILE:ah>")
add_dependencies(test-client-foreign ah)
find_program(AH_OPENSSL_BIN openssl)
ah_client_test(tls)
target_compile_definitions(test-client-tls PRIVATE AH_OPENSSL="${AH_OPENSSL_BIN}"
  AH_PYTHON3="${PYTHON3}" AH_TLS_SERVER_PY="${AH_CLIENT_TEST_DIR}/tls_server.py")

# The task-manager contract suite: one suite (contract.c), one program per implementation.
ah_client_test(tm-mock ${AH_CLIENT_TEST_DIR}/contract.c)
ah_client_test(tm-remote ${AH_CLIENT_TEST_DIR}/contract.c ${AH_CLIENT_TEST_DIR}/ahserver.c)
target_compile_definitions(test-client-tm-remote PRIVATE AH_BIN="$<TARGET_FILE:ah>")
add_dependencies(test-client-tm-remote ah)
ah_client_test(live ${AH_CLIENT_TEST_DIR}/contract.c ${AH_CLIENT_TEST_DIR}/ahserver.c)
target_compile_definitions(test-client-live PRIVATE AH_BIN="$<TARGET_FILE:ah>")
add_dependencies(test-client-live ah)

# The installed library as a user sees it (cmake --install, pkg-config, cc).
add_test(NAME client/install COMMAND ${PYTHON3} ${AH_CLIENT_TEST_DIR}/test_install.py)
set_tests_properties(client/install PROPERTIES LABELS client TIMEOUT 600
  ENVIRONMENT "AH_BUILD_DIR=${CMAKE_BINARY_DIR};AH_SOURCE_DIR=${CMAKE_SOURCE_DIR};AH_BIN=$<TARGET_FILE:ah>;AH_CC=${CMAKE_C_COMPILER};AH_SANITIZE=${AH_SANITIZE};PYTHONDONTWRITEBYTECODE=1;PYTHONPATH=${CMAKE_CURRENT_SOURCE_DIR}/integration")

# Allocation-failure torture: our allocations through ld --wrap, jansson's via its hooks.
ah_client_test(oom)
target_link_options(test-client-oom PRIVATE
  -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=strndup)

# The in-process implementation (src/api/local.c): the server core without HTTP.
ah_client_test(tm-local ${AH_CLIENT_TEST_DIR}/contract.c)
target_link_libraries(test-client-tm-local PRIVATE ah_api)
target_compile_definitions(test-client-tm-local PRIVATE AH_BIN="$<TARGET_FILE:ah>")
add_dependencies(test-client-tm-local ah)
